//! The seed's massive hammering: many contenders each try once to get the lock, hold it
//! (asleep) for a fixed time, and give up when their patience runs out. lockbydir as plugin
//! instances on threads (with and without wake-ups), and the peers as processes (flock, whose
//! patience is a per-process timer, and the seed-like mkdir lock).

use std::path::Path;

use serde::Serialize;

use super::contenders::{Kind, Record, RoundSpec, Setup, run_round};
use super::plan::Plan;
use super::stats::{median, median_by, percentile};

/// Who got in, who gave up, and the overhead of each handover.
#[derive(Clone, Debug, Serialize)]
pub struct Hammer {
    pub kind: Kind,
    pub contenders: usize,
    pub hold_ms: u64,
    pub patience_ms: u64,
    /// Runs; the figures are medians over them (overlaps: the sum).
    pub runs: usize,
    /// Contenders that got the lock.
    pub got_in: f64,
    /// Contenders whose patience ran out.
    pub gave_up: f64,
    /// Median gap between one holder starting to release and the next one holding (ms).
    pub handover_median_ms: f64,
    /// 99th percentile of that gap (ms).
    pub handover_p99_ms: f64,
    /// The longest wait of a contender that got in (ms).
    pub longest_wait_ms: f64,
    /// From the go to the last contender's end (s).
    pub elapsed_s: f64,
    /// The share of that time the lock was held (%).
    pub held_pct: f64,
    /// Median hold: from a contender holding to its starting to release, for a hold asleep
    /// `hold_ms` (ms): how late its sleep ends.
    pub hold_median_ms: f64,
    /// Pairs of holds that overlapped (must be 0).
    pub overlaps: usize,
}

/// The kinds hammered.
fn kinds(plan: &Plan) -> Vec<Kind> {
    let mut kinds = vec![Kind::PluginThreads, Kind::PluginThreadsPolling];
    if plan.processes {
        kinds.extend([Kind::FlockProcs, Kind::Seed5Procs, Kind::Seed30Procs]);
    }
    kinds
}

/// Run the hammering of every kind in `base` (a scratch directory on the filesystem under
/// test), runs interleaved.
pub fn measure(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Vec<Hammer>> {
    let kinds = kinds(plan);
    let mut runs: Vec<Vec<Hammer>> = vec![Vec::new(); kinds.len()];
    for run in 0..plan.hammer_runs {
        for (k, &kind) in kinds.iter().enumerate() {
            eprintln!(
                "bench: {}: hammering with {} {}, run {}/{}",
                base.display(),
                plan.hammer_contenders,
                kind.name(),
                run + 1,
                plan.hammer_runs
            );
            let dir = base.join(format!("hammer-{}-{run}", kind.name()));
            runs[k].push(once(setup, plan, kind, &dir)?);
        }
    }
    Ok(runs.iter().map(|r| median_of(r)).collect())
}

/// The median of each figure over the runs (overlaps: the sum).
fn median_of(runs: &[Hammer]) -> Hammer {
    let m = |f: fn(&Hammer) -> f64| median_by(runs, f);
    Hammer {
        runs: runs.len(),
        got_in: m(|h| h.got_in),
        gave_up: m(|h| h.gave_up),
        handover_median_ms: m(|h| h.handover_median_ms),
        handover_p99_ms: m(|h| h.handover_p99_ms),
        longest_wait_ms: m(|h| h.longest_wait_ms),
        elapsed_s: m(|h| h.elapsed_s),
        held_pct: m(|h| h.held_pct),
        hold_median_ms: m(|h| h.hold_median_ms),
        overlaps: runs.iter().map(|h| h.overlaps).sum(),
        ..runs[0].clone()
    }
}

/// One hammering of `kind` in `dir`.
fn once(setup: &Setup, plan: &Plan, kind: Kind, dir: &Path) -> anyhow::Result<Hammer> {
    let spec = RoundSpec {
        kind,
        contenders: plan.hammer_contenders,
        lock_dir: dir.join("locks"),
        work: dir.join("work"),
        hold_us: plan.hammer_hold_ms * 1_000,
        hold_sleep: true,
        patience_ms: plan.hammer_patience_ms,
        rounds: 1,
        // Long enough for every contender's single try.
        window_ms: 3_600_000,
        go_poll_ms: 20,
        host_holds: false,
        strace: None,
    };
    let out = run_round(setup, &spec)?;
    let _ = std::fs::remove_dir_all(dir);
    let mut holds = Vec::new();
    let (mut gave_up, mut end, mut longest) = (0, out.go_ns, 0u64);
    for r in out.contenders.iter().flat_map(|c| &c.records) {
        match *r {
            Record::Acquired {
                asked,
                got,
                releasing,
                released,
            } => {
                holds.push((got, releasing));
                end = end.max(released);
                longest = longest.max(got.saturating_sub(asked));
            }
            Record::GaveUp { gave_up: g, .. } => {
                gave_up += 1;
                end = end.max(g);
            }
        }
    }
    holds.sort_unstable();
    let held: u64 = holds.iter().map(|(g, r)| r.saturating_sub(*g)).sum();
    let mut hold_ms: Vec<f64> = holds
        .iter()
        .map(|(g, r)| r.saturating_sub(*g) as f64 / 1e6)
        .collect();
    let elapsed = end.saturating_sub(out.go_ns);
    let mut gaps: Vec<f64> = holds
        .windows(2)
        .map(|w| w[1].0.saturating_sub(w[0].1) as f64 / 1e6)
        .collect();
    Ok(Hammer {
        kind,
        contenders: plan.hammer_contenders,
        hold_ms: plan.hammer_hold_ms,
        patience_ms: plan.hammer_patience_ms,
        runs: 1,
        got_in: holds.len() as f64,
        gave_up: gave_up as f64,
        handover_median_ms: median(&mut gaps.clone()),
        handover_p99_ms: percentile(&mut gaps, 99.0),
        longest_wait_ms: longest as f64 / 1e6,
        elapsed_s: elapsed as f64 / 1e9,
        held_pct: 100.0 * held as f64 / elapsed.max(1) as f64,
        hold_median_ms: median(&mut hold_ms),
        overlaps: holds.windows(2).filter(|w| w[1].0 < w[0].1).count(),
    })
}
