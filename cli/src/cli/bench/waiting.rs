//! Waiting: the benchmark holds the lock for a whole window while N contenders wait for it.
//! What their waiting costs in CPU time, and how long after the release the first of them
//! holds the lock (and the last: each holds it once, briefly).

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
    /// CPU time the waiters burned per second of waiting, per waiter (% of one core).
    pub waiter_cpu_pct: f64,
    /// From the benchmark's release to the first waiter holding the lock (µs).
    pub first_after_release_us: f64,
    /// From the release to the last waiter holding it; each holds it once for the hold time
    /// (µs).
    pub last_after_release_us: f64,
}

/// Measure every kind with the plan's waiting contender counts in `base`.
pub fn measure(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Vec<WaitingRow>> {
    let mut results: BTreeMap<(usize, usize), Vec<[f64; 3]>> = BTreeMap::new();
    let series = Series {
        label: "wait",
        counts: &plan.waiting_contenders,
        rounds: 1,
        window_ms: plan.waiting_ms,
        host_holds: true,
    };
    let kinds = run_interleaved(setup, plan, base, &series, |n, k, out| {
        results.entry((n, k)).or_default().push(analyse(out));
    })?;
    Ok(results
        .into_iter()
        .map(|((n, k), runs)| WaitingRow {
            kind: kinds[k],
            contenders: n,
            runs: runs.len(),
            held_ms: plan.waiting_ms,
            waiter_cpu_pct: median_by(&runs, |r| r[0]),
            first_after_release_us: median_by(&runs, |r| r[1]),
            last_after_release_us: median_by(&runs, |r| r[2]),
        })
        .collect())
}

/// Waiter CPU (%), first and last acquisition after the release (µs).
fn analyse(out: &RoundOutput) -> [f64; 3] {
    let (mut cpu, mut holds, mut waiting) = (0u64, 0u64, 0u64);
    let (mut first, mut last) = (u64::MAX, 0u64);
    for c in &out.contenders {
        cpu += c.cpu_ns;
        for r in &c.records {
            match *r {
                Record::Acquired {
                    asked,
                    got,
                    releasing,
                    ..
                } => {
                    waiting += got.saturating_sub(asked);
                    holds += releasing.saturating_sub(got);
                    first = first.min(got);
                    last = last.max(got);
                }
                Record::GaveUp { asked, gave_up } => waiting += gave_up.saturating_sub(asked),
            }
        }
    }
    let after = |t: u64| t.saturating_sub(out.until_ns) as f64 / 1e3;
    [
        100.0 * cpu.saturating_sub(holds) as f64 / waiting.max(1) as f64,
        if first == u64::MAX {
            f64::NAN
        } else {
            after(first)
        },
        after(last),
    ]
}
