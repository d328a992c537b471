//! Exhaustive search of a small scenario's schedules, up to a number of preemptions.
//!
//! Stateless depth-first search: every schedule is run from scratch, replaying a prefix of
//! decisions and then taking the default option (the running actor goes on) at every later
//! decision. The next prefix is the previous schedule with its last decision that still has
//! an untried option changed to that option. A *preemption* is an option that stops an actor
//! that could go on (another actor runs, or time passes); bounding their number keeps the
//! search finite while covering every bug that needs at most that many, as in CHESS. Crashes
//! and injected faults are not preemptions; the scenario's budgets bound them.

use super::engine::Record;
use super::explore::{Found, Setup, run_schedule};
use super::scenario::Scenario;
use super::stats::Stats;
use super::strategy::Replay;

/// What a search did.
pub struct Searched {
    /// Counters over all schedules.
    pub stats: Stats,
    /// Whether every schedule within the bound was run (not cut by `max_schedules`).
    pub complete: bool,
}

/// The next prefix to explore after a schedule that took `decisions`; `None` when done.
fn next_prefix(decisions: &[Record], bound: u32) -> Option<Vec<usize>> {
    let mut cost_before = Vec::with_capacity(decisions.len());
    let mut cost = 0;
    for d in decisions {
        cost_before.push(cost);
        cost += (d.preemptive >> d.chosen) as u32 & 1;
    }
    for i in (0..decisions.len()).rev() {
        let d = decisions[i];
        for alt in d.chosen + 1..d.count {
            if cost_before[i] + ((d.preemptive >> alt) as u32 & 1) <= bound {
                let mut prefix: Vec<usize> = decisions[..i].iter().map(|d| d.chosen).collect();
                prefix.push(alt);
                return Some(prefix);
            }
        }
    }
    None
}

/// Run every schedule of `scenario` with at most `bound` preemptions (at most
/// `max_schedules` of them); stop at the first violation.
pub fn explore_dfs(
    scenario: &Scenario,
    bound: u32,
    max_schedules: u64,
    setup: &Setup,
) -> Result<Searched, Box<Found>> {
    let mut stats = Stats::default();
    let mut prefix = Vec::new();
    let mut previous: Vec<Record> = Vec::new();
    while stats.schedules < max_schedules {
        let outcome = run_schedule(scenario, Box::new(Replay::new(prefix.clone())), 0, setup);
        stats += outcome.stats;
        // The replayed part must offer the same options as when it was first explored.
        let replayed = prefix.len().saturating_sub(1);
        for (i, (now, then)) in outcome
            .decisions
            .iter()
            .zip(&previous)
            .take(replayed)
            .enumerate()
        {
            assert_eq!(
                (now.chosen, now.count),
                (then.chosen, then.count),
                "schedule replay diverged at decision {i}: the harness is not deterministic"
            );
        }
        if outcome.violation.is_some() {
            let how = format!(
                "exhaustive search, schedule #{} with at most {bound} preemptions",
                stats.schedules
            );
            return Err(Box::new(Found::new(scenario, how, 0, outcome, setup)));
        }
        match next_prefix(&outcome.decisions, bound) {
            Some(next) => prefix = next,
            None => {
                return Ok(Searched {
                    stats,
                    complete: true,
                });
            }
        }
        previous = outcome.decisions;
    }
    Ok(Searched {
        stats,
        complete: false,
    })
}
