//! What happened in one schedule, step by step, printed for a human.

use std::fmt;

use super::checker::T0;
use super::op::{Op, OpResult};
use super::strategy::Fault;

/// One line of a trace.
#[derive(Clone, Debug)]
pub enum Event {
    /// An actor's scheduling point ran.
    Step {
        /// Global step number (1-based).
        step: u64,
        /// Virtual time (ms since the start of the schedule).
        t: i64,
        /// Which actor.
        actor: usize,
        /// What it did.
        op: Op,
        /// What the protocol was told.
        result: OpResult,
        /// The fault injected into what the protocol was told.
        fault: Option<Fault>,
    },
    /// The scheduler moved virtual time forward.
    Time {
        /// From (ms since the start).
        from: i64,
        /// To (ms since the start).
        to: i64,
        /// A global pause (everyone stopped) rather than the next sleeper's wake-up.
        pause: bool,
    },
    /// The scheduler froze an actor while the others go on.
    Pause {
        /// Virtual time.
        t: i64,
        /// Which actor.
        actor: usize,
        /// Until when (virtual time).
        until: i64,
    },
    /// The scheduler crashed an actor: it never takes another step.
    Crash {
        /// Virtual time.
        t: i64,
        /// Which actor.
        actor: usize,
    },
    /// The scheduler ended a sleep for nothing, or lost its wake-up.
    Wake {
        /// Virtual time.
        t: i64,
        /// Which actor.
        actor: usize,
        /// Lost (it sleeps on) rather than spurious (it wakes now).
        lost: bool,
    },
    /// What the actor's driver saw or concluded (results of lock calls, beliefs).
    Note {
        /// Virtual time.
        t: i64,
        /// Which actor.
        actor: usize,
        /// The note.
        text: String,
    },
}

/// The events of one schedule, with the actors' names and clock offsets.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Actor labels by index.
    pub labels: Vec<String>,
    /// Clock offsets by index (ms).
    pub offsets: Vec<i64>,
    /// Everything in order.
    pub events: Vec<Event>,
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |a: &usize| self.labels.get(*a).map_or("?", String::as_str);
        writeln!(f, "  step  virtual-time  actor  operation -> result")?;
        for e in &self.events {
            match e {
                Event::Step {
                    step,
                    t,
                    actor,
                    op,
                    result,
                    fault,
                } => {
                    let clock = t + self.offsets.get(*actor).copied().unwrap_or(0);
                    write!(
                        f,
                        "  {step:>4}  t={t:<+6}      {:<6} {op} -> {result}",
                        name(actor)
                    )?;
                    match fault {
                        Some(Fault::Retried) => write!(
                            f,
                            "   [INJECTED: it succeeded; the retried RPC reported this]"
                        )?,
                        Some(Fault::ListingShowsBoth) => write!(
                            f,
                            "   [INJECTED: the listing overlapped a rename: old and new name]"
                        )?,
                        Some(Fault::ListingShowsNeither) => write!(
                            f,
                            "   [INJECTED: the listing overlapped a rename: neither name]"
                        )?,
                        None => {}
                    }
                    if matches!(op, Op::NowMs) {
                        write!(f, "   (own clock {clock:+})")?;
                    }
                    if let OpResult::Stamp(Ok(ms)) = result {
                        write!(f, "   (filesystem clock {:+})", *ms as i64 - T0)?;
                    }
                    writeln!(f)?;
                }
                Event::Time { from, to, pause } => writeln!(
                    f,
                    "        t={from:+} -> t={to:+}  {}",
                    if *pause {
                        "GLOBAL PAUSE: every actor stopped while time jumped"
                    } else {
                        "time passes (up to the next sleeper's wake-up)"
                    }
                )?,
                Event::Pause { t, actor, until } => writeln!(
                    f,
                    "        t={t:<+6}      {:<6} PAUSED until t={until:+} (not scheduled; \
                     the others go on)",
                    name(actor)
                )?,
                Event::Crash { t, actor } => writeln!(
                    f,
                    "        t={t:<+6}      {:<6} CRASH: stops here for good, releases nothing",
                    name(actor)
                )?,
                Event::Wake { t, actor, lost } => writeln!(
                    f,
                    "        t={t:<+6}      {:<6} {}",
                    name(actor),
                    if *lost {
                        "WAKE-UP LOST: sleeps to the end, whatever changes"
                    } else {
                        "SPURIOUS WAKE-UP: its sleep ends, nothing changed"
                    }
                )?,
                Event::Note { t, actor, text } => {
                    writeln!(f, "        t={t:<+6}      {:<6} # {text}", name(actor))?
                }
            }
        }
        Ok(())
    }
}
