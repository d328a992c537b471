//! From the contenders' logs to the handover figures: gaps between holders, barging,
//! fairness, throughput and the CPU time waiters burned.

use serde::Serialize;

use super::contenders::{Record, RoundOutput};
use super::stats::{jain, median, median_by, percentile};

/// The figures of one contention measurement (or the median of several).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Handover {
    /// Acquisitions analysed (those made inside the window).
    pub acquisitions: f64,
    /// Acquisitions per second.
    pub throughput_per_s: f64,
    /// Median gap from a holder starting to release to a DIFFERENT contender holding (µs).
    pub handover_median_us: f64,
    /// 99th percentile of that gap (µs).
    pub handover_p99_us: f64,
    /// Of the times the lock passed on while someone else was waiting, the share that went
    /// to a different contender (%); the rest the releaser took again at once (barging).
    pub to_other_pct: f64,
    /// Fewest acquisitions of one contender in the window.
    pub acquisitions_min: f64,
    /// Most acquisitions of one contender in the window.
    pub acquisitions_max: f64,
    /// Jain's index of the acquisitions per contender (1: all equal; 1/N: one got all).
    pub jain: f64,
    /// The longest wait of any contender (ms), counting every wait that overlaps the window
    /// in full.
    pub longest_wait_ms: f64,
    /// The median over contenders of each one's longest wait (ms).
    pub median_longest_wait_ms: f64,
    /// The target's bound on the longest wait, 2 * N * hold (ms).
    pub wait_bound_ms: f64,
    /// All CPU time of all contenders after the go per acquisition, the busy hold included
    /// (µs). (What waiters alone burn is measured separately, see `waiting`.)
    pub cpu_us_per_acquisition: f64,
    /// Attempts that ran out of patience.
    pub gave_up: f64,
    /// Pairs of holds that overlapped (must be 0).
    pub overlaps: f64,
    /// Every handover to a different contender (µs), of all runs: the distribution the
    /// picture shows (`--svg`), not in the JSON.
    #[serde(skip)]
    pub samples_us: Vec<f64>,
}

/// One acquisition, with its contender.
#[derive(Clone, Copy)]
struct Acq {
    who: usize,
    asked: u64,
    got: u64,
    releasing: u64,
}

/// Analyse one measurement: acquisitions made from `settle_ms` after the go until the end of
/// the window count; CPU time counts everything after the go.
pub fn analyse(out: &RoundOutput, settle_ms: u64, hold_us: u64) -> Handover {
    let from = out.go_ns + settle_ms * 1_000_000;
    let in_window = |t: u64| t >= from && t <= out.until_ns;
    let mut all: Vec<Acq> = Vec::new();
    let (mut cpu, mut gave_up) = (0u64, 0);
    for (who, c) in out.contenders.iter().enumerate() {
        cpu += c.cpu_ns;
        for r in &c.records {
            match *r {
                Record::Acquired {
                    asked,
                    got,
                    releasing,
                    ..
                } => {
                    all.push(Acq {
                        who,
                        asked,
                        got,
                        releasing,
                    });
                }
                Record::GaveUp { .. } => gave_up += 1,
            }
        }
    }
    all.sort_by_key(|a| a.got);
    let overlaps = all.windows(2).filter(|w| w[1].got < w[0].releasing).count();
    let per_who = by_contender(&all, out.contenders.len());

    let (mut gaps, mut to_other, mut barged) = (Vec::new(), 0u64, 0u64);
    for w in all.windows(2) {
        let (prev, next) = (w[0], w[1]);
        if !in_window(prev.got) || !in_window(next.got) {
            continue;
        }
        if next.who != prev.who {
            to_other += 1;
            gaps.push(next.got.saturating_sub(prev.releasing) as f64 / 1e3);
        } else if someone_else_waiting(&per_who, &out.contenders, prev.who, prev.releasing) {
            barged += 1;
        }
    }

    let mut counts = vec![0.0; out.contenders.len()];
    let mut longest = vec![0u64; out.contenders.len()];
    for a in &all {
        if in_window(a.got) {
            counts[a.who] += 1.0;
        }
        // A wait that overlaps the window counts whole, even if it ended after the window
        // (a contender starved during the window gets in only once the others stop).
        if a.got >= from && a.asked <= out.until_ns {
            longest[a.who] = longest[a.who].max(a.got.saturating_sub(a.asked));
        }
    }
    let window_s = out.until_ns.saturating_sub(from) as f64 / 1e9;
    let analysed: f64 = counts.iter().sum();
    let mut longest_ms: Vec<f64> = longest.iter().map(|&l| l as f64 / 1e6).collect();
    let acquired = all.len().max(1) as f64;
    Handover {
        acquisitions: analysed,
        throughput_per_s: analysed / window_s.max(1e-9),
        handover_median_us: median(&mut gaps.clone()),
        handover_p99_us: percentile(&mut gaps.clone(), 99.0),
        samples_us: gaps,
        to_other_pct: match to_other + barged {
            0 => f64::NAN,
            passed => 100.0 * to_other as f64 / passed as f64,
        },
        acquisitions_min: counts.iter().copied().fold(f64::INFINITY, f64::min),
        acquisitions_max: counts.iter().copied().fold(0.0, f64::max),
        jain: jain(&counts),
        longest_wait_ms: longest_ms.iter().copied().fold(0.0, f64::max),
        median_longest_wait_ms: median(&mut longest_ms),
        wait_bound_ms: 2.0 * out.contenders.len() as f64 * hold_us as f64 / 1e3,
        cpu_us_per_acquisition: cpu as f64 / 1e3 / acquired,
        gave_up: gave_up as f64,
        overlaps: overlaps as f64,
    }
}

/// Each contender's acquisitions' (asked, got), in order.
fn by_contender(all: &[Acq], n: usize) -> Vec<Vec<(u64, u64)>> {
    let mut per = vec![Vec::new(); n];
    for a in all {
        per[a.who].push((a.asked, a.got));
    }
    per
}

/// Whether a contender other than `holder` was inside acquire at time `t`.
fn someone_else_waiting(
    per_who: &[Vec<(u64, u64)>],
    contenders: &[super::contenders::Contender],
    holder: usize,
    t: u64,
) -> bool {
    per_who.iter().enumerate().any(|(who, spans)| {
        if who == holder {
            return false;
        }
        let i = spans.partition_point(|&(asked, _)| asked <= t);
        let in_acquired = i > 0 && spans[i - 1].1 > t;
        let in_gave_up = contenders[who]
            .records
            .iter()
            .any(|r| matches!(*r, Record::GaveUp { asked, gave_up } if asked <= t && gave_up > t));
        in_acquired || in_gave_up
    })
}

/// The median of every figure over several runs.
pub fn median_of(runs: &[Handover]) -> Handover {
    let m = |f: fn(&Handover) -> f64| median_by(runs, f);
    Handover {
        acquisitions: m(|h| h.acquisitions),
        throughput_per_s: m(|h| h.throughput_per_s),
        handover_median_us: m(|h| h.handover_median_us),
        handover_p99_us: m(|h| h.handover_p99_us),
        to_other_pct: m(|h| h.to_other_pct),
        acquisitions_min: m(|h| h.acquisitions_min),
        acquisitions_max: m(|h| h.acquisitions_max),
        jain: m(|h| h.jain),
        longest_wait_ms: m(|h| h.longest_wait_ms),
        median_longest_wait_ms: m(|h| h.median_longest_wait_ms),
        wait_bound_ms: m(|h| h.wait_bound_ms),
        cpu_us_per_acquisition: m(|h| h.cpu_us_per_acquisition),
        gave_up: m(|h| h.gave_up),
        overlaps: runs.iter().map(|h| h.overlaps).sum(),
        samples_us: runs
            .iter()
            .flat_map(|h| h.samples_us.iter().copied())
            .collect(),
    }
}
