//! Contended handover: N contenders of each kind loop acquire, hold, release on one lock.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::contenders::{Kind, Series, Setup, run_interleaved};
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
    let mut results: BTreeMap<(usize, usize), Vec<Handover>> = BTreeMap::new();
    let series = Series {
        label: "contend",
        counts: &plan.contenders,
        rounds: 0,
        window_ms: plan.window_ms,
        host_holds: false,
    };
    let kinds = run_interleaved(setup, plan, base, &series, |n, k, out| {
        let figures = analyse(out, plan.settle_ms, plan.hold_us);
        results.entry((n, k)).or_default().push(figures);
    })?;
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
