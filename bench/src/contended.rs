//! Contended handover: N contenders of each kind loop acquire, hold, release on one lock.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::contenders::{Kind, Record, RoundSpec, Series, Setup, run_interleaved, run_round};
use super::handover::{Handover, analyse, median_of};
use super::plan::Plan;
use super::syscalls;

/// The figures for one kind and contender count, medians over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct ContendedRow {
    pub kind: Kind,
    pub contenders: usize,
    pub runs: usize,
    pub hold_us: u64,
    #[serde(flatten)]
    pub figures: Handover,
    /// System calls per acquisition, all contender processes together, from one more run
    /// under `strace -c -f` (processes only; `None` without strace).
    pub syscalls_per_acquisition: Option<f64>,
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
    let traced = plan.syscalls && syscalls::available();
    if plan.syscalls && !traced {
        eprintln!("bench: system calls per acquisition: skipped: no strace on PATH");
    }
    let mut rows = Vec::new();
    for ((n, kind), runs) in results {
        let syscalls_per_acquisition = match traced && kind.is_process() {
            // Under ptrace everything is slower: a round that cannot be counted is reported
            // and left out, not a failure of the benchmark.
            true => count_syscalls(setup, plan, base, label, n, kind)
                .inspect_err(|e| {
                    eprintln!("bench: {} x{n} under strace: skipped: {e:#}", kind.name())
                })
                .ok(),
            false => None,
        };
        rows.push(ContendedRow {
            kind,
            contenders: n,
            runs: runs.len(),
            hold_us: plan.hold_us,
            figures: median_of(&runs),
            syscalls_per_acquisition,
        });
    }
    Ok(rows)
}

/// One more round of `n` contender processes of `kind`, under `strace -c -f` from just
/// before the go: their system calls per acquisition.
fn count_syscalls(
    setup: &Setup,
    plan: &Plan,
    base: &Path,
    label: &str,
    n: usize,
    kind: Kind,
) -> anyhow::Result<f64> {
    eprintln!(
        "bench: {}: {} x{n} ({label}), under strace",
        base.display(),
        kind.name()
    );
    let dir = base.join(format!("{label}-{}-{n}-strace", kind.name()));
    let summary = base.join(format!("{label}-{}-{n}-strace.txt", kind.name()));
    let spec = RoundSpec {
        kind,
        contenders: n,
        lock_dir: dir.join("locks"),
        work: dir.join("work"),
        hold_us: plan.hold_us,
        hold_sleep: false,
        patience_ms: u64::MAX,
        rounds: 0,
        // Traced processes run several times slower: a longer window, for enough
        // acquisitions.
        window_ms: 3 * plan.window_ms,
        go_poll_ms: 1,
        host_holds: false,
        strace: Some(summary.clone()),
    };
    let out = run_round(setup, &spec)?;
    let calls = syscalls::total_calls(&summary)?;
    let acquisitions = out
        .contenders
        .iter()
        .flat_map(|c| &c.records)
        .filter(|r| matches!(r, Record::Acquired { .. }))
        .count();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&summary);
    anyhow::ensure!(acquisitions > 0, "no acquisition in the window");
    Ok(calls as f64 / acquisitions as f64)
}
