//! Contended handover: N contenders of each kind loop acquire, hold, release on one lock.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::contenders::{Kind, RoundSpec, Setup, run_round};
use super::handover::{Handover, analyse, median_of};
use super::plan::Plan;

/// The figures for one kind and contender count, medians over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct ContendedRow {
    pub kind: Kind,
    pub contenders: usize,
    pub runs: usize,
    pub hold_us: u64,
    #[serde(flatten)]
    pub figures: Handover,
}

/// Measure every kind and contender count in `base` (a scratch directory on the filesystem
/// under test). Runs are interleaved: each run goes through every configuration once.
pub fn measure(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Vec<ContendedRow>> {
    let kinds = Kind::all(plan.processes);
    let mut results: BTreeMap<(usize, usize), Vec<Handover>> = BTreeMap::new();
    for run in 0..plan.contended_runs {
        for &n in &plan.contenders {
            for (k, &kind) in kinds.iter().enumerate() {
                eprintln!(
                    "bench: {}: {} x{n}, run {}/{}",
                    base.display(),
                    kind.name(),
                    run + 1,
                    plan.contended_runs
                );
                let dir = base.join(format!("contend-{}-{n}-{run}", kind.name()));
                let spec = RoundSpec {
                    kind,
                    contenders: n,
                    lock_dir: dir.join("locks"),
                    work: dir.join("work"),
                    hold_us: plan.hold_us,
                    hold_sleep: false,
                    patience_ms: u64::MAX,
                    rounds: 0,
                    window_ms: plan.window_ms,
                    go_poll_ms: 1,
                    host_holds: false,
                };
                let out = run_round(setup, &spec)?;
                let figures = analyse(&out, plan.settle_ms, plan.hold_us);
                results.entry((n, k)).or_default().push(figures);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    Ok(results
        .into_iter()
        .map(|((n, k), runs)| ContendedRow {
            kind: kinds[k],
            contenders: n,
            runs: runs.len(),
            hold_us: plan.hold_us,
            figures: median_of(&runs),
        })
        .collect())
}
