//! Waiting: the benchmark holds the lock for a whole window while contenders wait for it,
//! then lets go. Two series: what waiting costs in CPU time (one waiter process, and
//! `peer_contenders` waiting plugins, over a long hold), and how long after the release the
//! last of `peer_contenders` waiters holds the lock (each holds it once, briefly).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::contenders::{Kind, Record, RoundOutput, Series, Setup, run_interleaved};
use super::plan::Plan;
use super::stats::median_by;

/// The figures for one kind and contender count, medians over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct WaitingRow {
    pub kind: Kind,
    pub contenders: usize,
    pub runs: usize,
    /// How long the benchmark held the lock (ms).
    pub held_ms: u64,
    /// How long each waiter holds it once it has it (µs, busy).
    pub hold_us: u64,
    /// CPU time the waiters burned per second of waiting, per waiter (% of one core): from
    /// the go to just before the benchmark let go.
    pub waiter_cpu_pct: f64,
    /// From the benchmark's release to the first waiter holding the lock (µs).
    pub first_after_release_us: f64,
    /// From the release to the last waiter holding it; each holds it once for the hold time
    /// (µs).
    pub last_after_release_us: f64,
}

/// Waiting CPU: one waiter process of each process kind (lockbydir with and without
/// wake-ups, flock, seed-like), and `peer_contenders` waiting plugins on threads (with and
/// without wake-ups), the benchmark holding the lock `waiting_cpu_ms`.
pub fn measure_cpu(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Vec<WaitingRow>> {
    let mut configs: Vec<(usize, Kind)> = Kind::peers(plan.processes)
        .into_iter()
        .filter(|k| k.is_process())
        .map(|k| (1, k))
        .collect();
    for kind in [Kind::PluginThreads, Kind::PluginThreadsPolling] {
        configs.push((plan.peer_contenders, kind));
    }
    let series = Series {
        label: "wait-cpu",
        configs: &configs,
        runs: plan.waiting_cpu_runs,
        rounds: 1,
        window_ms: plan.waiting_cpu_ms,
        host_holds: true,
    };
    measure(setup, plan, base, &series)
}

/// The last of `peer_contenders` waiters of every kind, after the benchmark held the lock
/// `after_hold_ms`.
pub fn measure_after_hold(
    setup: &Setup,
    plan: &Plan,
    base: &Path,
) -> anyhow::Result<Vec<WaitingRow>> {
    let configs: Vec<(usize, Kind)> = Kind::peers(plan.processes)
        .into_iter()
        .map(|k| (plan.peer_contenders, k))
        .collect();
    let series = Series {
        label: "after-hold",
        configs: &configs,
        runs: plan.contended_runs,
        rounds: 1,
        window_ms: plan.after_hold_ms,
        host_holds: true,
    };
    measure(setup, plan, base, &series)
}

fn measure(
    setup: &Setup,
    plan: &Plan,
    base: &Path,
    series: &Series,
) -> anyhow::Result<Vec<WaitingRow>> {
    let mut results: BTreeMap<(usize, Kind), Vec<[f64; 3]>> = BTreeMap::new();
    run_interleaved(setup, plan, base, series, |n, kind, out| {
        results.entry((n, kind)).or_default().push(analyse(out));
    })?;
    let mut rows: Vec<WaitingRow> = results
        .into_iter()
        .map(|((n, kind), runs)| WaitingRow {
            kind,
            contenders: n,
            runs: runs.len(),
            held_ms: series.window_ms,
            hold_us: plan.hold_us,
            waiter_cpu_pct: median_by(&runs, |r| r[0]),
            first_after_release_us: median_by(&runs, |r| r[1]),
            last_after_release_us: median_by(&runs, |r| r[2]),
        })
        .collect();
    // In the order measured.
    rows.sort_by_key(|r| {
        let at = |c: &(usize, Kind)| *c == (r.contenders, r.kind);
        series.configs.iter().position(at)
    });
    Ok(rows)
}

/// Waiter CPU (%), first and last acquisition after the release (µs).
fn analyse(out: &RoundOutput) -> [f64; 3] {
    let (mut first, mut last) = (u64::MAX, 0u64);
    for c in &out.contenders {
        for r in &c.records {
            if let Record::Acquired { got, .. } = *r {
                first = first.min(got);
                last = last.max(got);
            }
        }
    }
    let waited = out.until_ns.saturating_sub(out.go_ns) as f64;
    let cpu = out.cpu_waiting_ns.as_ref().map_or(f64::NAN, |cpu| {
        let all: u64 = cpu.iter().sum();
        100.0 * all as f64 / (waited * cpu.len().max(1) as f64)
    });
    let after = |t: u64| t.saturating_sub(out.until_ns) as f64 / 1e3;
    [
        cpu,
        if first == u64::MAX {
            f64::NAN
        } else {
            after(first)
        },
        after(last),
    ]
}
