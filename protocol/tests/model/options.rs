//! What can happen next in a schedule, default first.
//!
//! The default is what a plain deterministic scheduler would do: the actor that ran last
//! goes on; if it cannot, the next actor that can, round-robin; if nobody can, time moves to
//! the next wake-up. Every other option is a *deviation*, and the exhaustive search bounds
//! how many a schedule may take (delay bounding): running another actor, letting time pass
//! while someone could run, pausing the running actor for a while, crashing it, injecting a
//! fault, pausing everyone.
//!
//! Two reductions drop options that cannot lead anywhere new:
//! - Before a *private* step of the running actor (inside its own staging directory, whose
//!   name holds its random token), nothing but the default and a crash is offered: the step
//!   commutes with every other actor's step and with time, so deviating there is the same as
//!   deviating one step later.
//! - Before a clock read of the running actor, other actors are not offered: running them
//!   first, with no time passing, is the same as running them right after the read. Time
//!   passing and pauses are offered. Crashing is not: a clock read has no effect, so crashing
//!   before it is the same as crashing before the next step.

use super::op::Op;
use super::state::State;
use super::strategy::{Choice, Fault};

/// The options at one decision; the first is the default.
pub fn options(st: &State) -> Vec<Choice> {
    let n = st.actors.len();
    let enabled: Vec<usize> = (0..n).filter(|&a| st.actors[a].enabled(st.t)).collect();
    let cur = st.current.filter(|c| enabled.contains(c));
    let cur_op = cur.and_then(|c| st.actors[c].pending());
    let private = cur_op.is_some_and(Op::is_private);
    let clock = cur_op.is_some_and(Op::reads_clock);
    let next_wake = (0..n)
        .filter_map(|a| st.actors[a].wakes_at())
        .filter(|&w| w > st.t)
        .min();

    // The default, then the other actors round-robin after it.
    let start = cur.or(st.last_run.map(|l| l + 1)).unwrap_or(0);
    let order: Vec<usize> = (0..n)
        .map(|i| (start + i) % n)
        .filter(|a| enabled.contains(a))
        .collect();
    let mut out: Vec<Choice> = Vec::new();
    for (i, &a) in order.iter().enumerate() {
        if i == 0 || !(private || clock) {
            out.push(Choice::Run {
                actor: a,
                fault: None,
            });
        }
    }
    if let Some(to) = next_wake
        && !private
    {
        out.push(Choice::Tick { to });
    }
    if !(private || clock) {
        for (a, actor) in st.actors.iter().enumerate() {
            let Some(Op::SleepUntilChanged { until, .. }) = actor.pending() else {
                continue;
            };
            if st.budgets.spurious_wakeups > 0 && !actor.woken && st.t < *until {
                out.push(Choice::Spurious { actor: a });
            }
            if st.budgets.lost_wakeups > 0 && actor.woken && !actor.deaf && st.t < *until {
                out.push(Choice::Lose { actor: a });
            }
        }
    }
    if let Some(c) = st.current
        && st.actors[c].pending().is_some()
    {
        if st.budgets.pauses > 0 && st.pause_ms > 0 && !private {
            out.push(Choice::Pause { actor: c });
        }
        if st.budgets.crashes > 0 && st.actors[c].may_crash && !clock {
            out.push(Choice::Crash { actor: c });
        }
    }
    if st.budgets.faults > 0 {
        let runs: Vec<usize> = out
            .iter()
            .filter_map(|c| match c {
                Choice::Run { actor, .. } => Some(*actor),
                _ => None,
            })
            .collect();
        for a in runs {
            for fault in faults(st, a) {
                out.push(Choice::Run {
                    actor: a,
                    fault: Some(fault),
                });
            }
        }
    }
    if st.budgets.jumps > 0 && st.jump_ms > 0 && !private {
        out.push(Choice::Jump {
            to: st.t + st.jump_ms as i64,
        });
    }
    out
}

/// The faults that could be injected into `actor`'s pending operation: a retried RPC for a
/// rename or create_dir that will succeed; a torn result for a listing of a directory that
/// changed while the actor was waiting to list it.
fn faults(st: &State, actor: usize) -> Vec<Fault> {
    let a = &st.actors[actor];
    match a.pending() {
        Some(Op::Rename(from, to)) if st.world.check_rename(from, to).is_ok() => {
            vec![Fault::Retried]
        }
        Some(Op::CreateDir(p)) if st.world.check_create(p).is_ok() => vec![Fault::Retried],
        Some(Op::ReadDir(p)) => [Fault::ListingShowsBoth, Fault::ListingShowsNeither]
            .into_iter()
            .filter(|&f| torn(a.listed.as_deref(), st.world.children(p).as_deref(), f).is_some())
            .collect(),
        _ => Vec::new(),
    }
}

/// What a listing that started when it saw `before` and ended seeing `after` shows with
/// `fault`; `None` if that is no different from `after`.
pub fn torn(
    before: Option<&[String]>,
    after: Option<&[String]>,
    fault: Fault,
) -> Option<Vec<String>> {
    let (before, after) = (before?, after?);
    let mut names: Vec<String> = match fault {
        Fault::ListingShowsBoth => before.iter().chain(after).cloned().collect(),
        Fault::ListingShowsNeither => after
            .iter()
            .filter(|n| before.contains(n))
            .cloned()
            .collect(),
        Fault::Retried => return None,
    };
    names.sort();
    names.dedup();
    (names != after).then_some(names)
}
