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

/// The contender counts and kinds measured: the core kinds at every count of the plan, and
/// at `plan.peer_contenders` (the count the targets name) every kind, the peers and
/// lockbydir's polling fallback included.
pub fn configs(plan: &Plan) -> Vec<(usize, Kind)> {
    let mut configs = Vec::new();
    for &n in &plan.contenders {
        let kinds = if n == plan.peer_contenders {
            Kind::peers(plan.processes)
        } else {
            Kind::core(plan.processes)
        };
        configs.extend(kinds.into_iter().map(|k| (n, k)));
    }
    configs
}

/// Measure every kind and contender count in `base` (a scratch directory on the filesystem
/// under test). Runs are interleaved: each run goes through every configuration once.
pub fn measure(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Vec<ContendedRow>> {
    measure_configs(setup, plan, base, "contend", &configs(plan))
}

/// Measure `configs` in `base`, `plan.contended_runs` interleaved runs, each round's scratch
/// directory named after `label`; one row per configuration, medians over the runs.
pub fn measure_configs(
    setup: &Setup,
    plan: &Plan,
    base: &Path,
    label: &str,
    configs: &[(usize, Kind)],
) -> anyhow::Result<Vec<ContendedRow>> {
    let mut results: BTreeMap<(usize, Kind), Vec<Handover>> = BTreeMap::new();
    let series = Series {
        label,
        configs,
        runs: plan.contended_runs,
        rounds: 0,
        window_ms: plan.window_ms,
        host_holds: false,
    };
    run_interleaved(setup, plan, base, &series, |n, kind, out| {
        let figures = analyse(out, plan.settle_ms, plan.hold_us);
        results.entry((n, kind)).or_default().push(figures);
    })?;
    Ok(results
        .into_iter()
        .map(|((n, kind), runs)| ContendedRow {
            kind,
            contenders: n,
            runs: runs.len(),
            hold_us: plan.hold_us,
            figures: median_of(&runs),
        })
        .collect())
}
