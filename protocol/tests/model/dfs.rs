//! Exhaustive search of a small scenario's schedules, up to a number of deviations.
//!
//! Stateless depth-first search: every schedule is run from scratch, replaying a prefix of
//! decisions and then taking the default option at every later decision. The next prefix is
//! the previous schedule with its last decision that still has an untried option changed to
//! that option. Every option other than the default (see [`super::options`]) is a
//! *deviation*; bounding how many a schedule may take keeps the search finite and
//! polynomial (delay bounding) while covering every bug that needs at most that many: a
//! preemption, a pause, a crash and a fault are one deviation each.

use super::explore::{Found, Setup, run_schedule};
use super::scenario::Scenario;
use super::state::Record;
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
fn next_prefix(decisions: &[Record], bound: usize) -> Option<Vec<usize>> {
    let mut deviations = decisions.iter().filter(|d| d.chosen != 0).count();
    for i in (0..decisions.len()).rev() {
        let d = decisions[i];
        // Deviations before decision i, plus one for taking a non-default option there.
        if d.chosen != 0 {
            deviations -= 1;
        }
        if d.chosen + 1 < d.count && deviations < bound {
            let mut prefix: Vec<usize> = decisions[..i].iter().map(|d| d.chosen).collect();
            prefix.push(d.chosen + 1);
            return Some(prefix);
        }
    }
    None
}

/// Run every schedule of `scenario` with at most `bound` deviations (at most
/// `max_schedules` of them); stop at the first violation.
pub fn explore_dfs(
    scenario: &Scenario,
    bound: usize,
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
        for (i, (now, then)) in outcome.decisions.iter().zip(&previous).enumerate() {
            if i + 1 >= prefix.len() {
                break;
            }
            assert_eq!(
                (now.chosen, now.count),
                (then.chosen, then.count),
                "schedule replay diverged at decision {i}: the harness is not deterministic"
            );
        }
        if outcome.violation.is_some() {
            let how = format!(
                "exhaustive search with at most {bound} deviations, schedule #{}",
                stats.schedules
            );
            return Err(Box::new(Found::new(
                scenario,
                how,
                0,
                stats.schedules,
                outcome,
                setup,
            )));
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
