//! What is being checked: the actors, their clocks and habits, and the scheduler's budgets.

use std::fmt;

use lockbydir_protocol::lock::{FS_CLOCK_LAG_MS, TICKET_LIFETIME_MS};
use lockbydir_protocol::{Fairness, Options};

use super::rng::Rng;

/// The one lock every actor contends for.
pub const LOCK_NAME: &str = "bed";

/// One actor: a process with its own clock that takes the lock a few rounds.
#[derive(Clone, Debug)]
pub struct ActorSpec {
    /// Holder label; also names the actor in traces.
    pub label: String,
    /// Its wall clock reads global virtual time plus this (ms).
    pub offset_ms: i64,
    /// `Options::timeout_ms`.
    pub timeout_ms: u64,
    /// `Options::patience_ms`; 0 means `try_acquire`, otherwise blocking `acquire`.
    pub patience_ms: u64,
    /// How many times it tries to take the lock.
    pub rounds: u32,
    /// How many times it refreshes per acquisition, each after `hold_ms` of work.
    pub refreshes: u32,
    /// How long it works between two calls while holding (ms of its own sleep). More than
    /// the timeout makes it an actor that pauses past its deadline by itself.
    pub hold_ms: u64,
    /// Whether the scheduler may crash it (at any scheduling point, at most once).
    pub may_crash: bool,
    /// How long it sleeps before its first round (ms): when it arrives.
    pub start_ms: u64,
    /// With patience: `try_acquire` first, and `acquire` only if that found the lock busy,
    /// as the lockbydir host does (the wait then begins with the try's look).
    pub tries_first: bool,
}

/// A model: actors plus what the scheduler may do to them.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Short name for reports.
    pub name: String,
    /// `Options::max_clock_skew_ms`, the same for everyone.
    pub skew_ms: u64,
    /// `Options::min_poll_ms`.
    pub min_poll_ms: u64,
    /// `Options::max_poll_ms`.
    pub max_poll_ms: u64,
    /// The actors.
    pub actors: Vec<ActorSpec>,
    /// How many successful renames / directory creations may report failure (retried RPC).
    pub faults: u32,
    /// How many crashes the scheduler may cause (among actors with `may_crash`).
    pub crashes: u32,
    /// How many times the scheduler may freeze one actor for `pause_ms` while the others go
    /// on.
    pub pauses: u32,
    /// Length of such a pause (ms): by default long enough for a waiter to take over from a
    /// holder frozen at any point of its hold.
    pub pause_ms: u64,
    /// How many global pauses (everyone stops while time jumps by `jump_ms`).
    pub jumps: u32,
    /// Size of one global pause (ms).
    pub jump_ms: u64,
    /// Whether the filesystem reports modification times (then a takeover also needs the
    /// lock to look expired by the filesystem's clock); without, `modified_ms` says `None`.
    pub fs_timestamps: bool,
    /// How far the filesystem's clock lags virtual time (ms): the time a change is stamped
    /// with is `floor((t - lag) / granularity) * granularity` ([`super::world::World::stamp`]).
    pub fs_lag_ms: u64,
    /// The step of the filesystem's clock (ms): its tick, or 1000 for whole seconds.
    pub fs_granularity_ms: u64,
    /// Whether waiters are woken by changes (`Env::wakes_on_change`); without, they poll.
    pub wakeups: bool,
    /// Every actor's `Options::fairness`.
    pub fairness: Fairness,
    /// How many wake-ups the scheduler may lose (the sleep then lasts its whole time).
    pub lost_wakeups: u32,
    /// How many wake-ups for nothing the scheduler may cause (a sleep ends early with no
    /// change). Late wake-ups need no budget: the scheduler may run anyone else first.
    pub spurious_wakeups: u32,
    /// The lock's last fence when the schedule starts: the lockdir then already holds
    /// `free.<fence>` (`None`: there is no lockdir yet).
    pub initial_fence: Option<u64>,
    /// Whether the final probe must take over a dead holder promptly (see
    /// [`super::checker::Checker::probe_took_over`]); only sound where nothing else may hold
    /// it back (no crashed waiter's ticket: waiters here do not crash).
    pub prompt_probe: bool,
    /// A schedule longer than this is reported as a livelock.
    pub max_steps: u64,
}

impl ActorSpec {
    /// An actor with one round, no refresh, short work, honest clock, no crash.
    pub fn new(label: &str, timeout_ms: u64, patience_ms: u64) -> Self {
        ActorSpec {
            label: label.into(),
            offset_ms: 0,
            timeout_ms,
            patience_ms,
            rounds: 1,
            refreshes: 0,
            hold_ms: timeout_ms / 2,
            may_crash: false,
            start_ms: 0,
            tries_first: false,
        }
    }
}

impl Scenario {
    /// A scenario with no faults, crashes or global pauses, and up to two single-actor
    /// pauses.
    pub fn new(name: &str, skew_ms: u64, actors: Vec<ActorSpec>) -> Self {
        let longest = actors.iter().map(|a| a.timeout_ms).max().unwrap_or(1);
        Scenario {
            pauses: 2,
            pause_ms: longest + 2 * skew_ms + 1,
            name: name.into(),
            skew_ms,
            min_poll_ms: 5,
            max_poll_ms: 40,
            actors,
            faults: 0,
            crashes: 0,
            jumps: 0,
            jump_ms: 0,
            fs_timestamps: true,
            // A kernel tick at HZ=250 and about the lag measured after an idle spell
            // (`lockbydir_protocol::lock::FS_CLOCK_LAG_MS`).
            fs_lag_ms: 5,
            fs_granularity_ms: 4,
            wakeups: false,
            fairness: Fairness::Fifo,
            lost_wakeups: 0,
            spurious_wakeups: 0,
            initial_fence: None,
            prompt_probe: false,
            max_steps: 50_000,
        }
    }

    /// How late the final probe's takeover may be, beyond when it is due, if this scenario
    /// checks it: the filesystem clock's margin (as rule (b) may infer it) and lag, two of
    /// its steps, and a few polls of the probe.
    pub fn prompt_probe_within_ms(&self) -> Option<i64> {
        self.prompt_probe.then(|| {
            (FS_CLOCK_LAG_MS
                + 100
                + self.fs_lag_ms
                + 2 * self.fs_granularity_ms
                + 2 * self.max_poll_ms
                + 30) as i64
        })
    }

    /// The lock options `spec` opens the lock with.
    pub fn options(&self, spec: &ActorSpec) -> Options {
        Options {
            timeout_ms: spec.timeout_ms,
            patience_ms: spec.patience_ms,
            min_poll_ms: self.min_poll_ms,
            max_poll_ms: self.max_poll_ms,
            max_clock_skew_ms: self.skew_ms,
            holder: spec.label.clone(),
            fairness: self.fairness,
        }
    }

    /// Whether every clock is within half the stated skew of virtual time, so that every
    /// two differ by at most the skew.
    pub fn clocks_are_honest(&self) -> bool {
        let half = (self.skew_ms / 2) as i64;
        self.actors.iter().all(|a| a.offset_ms.abs() <= half)
    }

    /// The actor that runs alone after everyone else stopped: with enough patience to outwait
    /// any deadline left behind, it must get the lock (liveness, and no broken lockdir). Its
    /// clock is the slowest allowed one, so it waits longest.
    pub fn probe(&self) -> ActorSpec {
        let longest = self.actors.iter().map(|a| a.timeout_ms).max().unwrap_or(1);
        let offset_ms = -((self.skew_ms / 2) as i64);
        // A deadline written by the fastest clock, seen by the probe's: it must wait out the
        // difference, the skew margin, and a poll (while the filesystem's clock says no).
        let fastest = self.actors.iter().map(|a| a.offset_ms).max().unwrap_or(0);
        let ahead = (fastest - offset_ms).max(0) as u64;
        // Rule (b) waits out the margin for the filesystem clock's lag and granularity, which
        // may be taken for a coarser one (up to 2 s) when readings happen to be round.
        let fs_clock = match self.fs_timestamps {
            true => {
                FS_CLOCK_LAG_MS
                    + self.fs_lag_ms
                    + 2 * self.fs_granularity_ms
                    + if self.fs_granularity_ms >= 1_000 {
                        2_000
                    } else {
                        100
                    }
            }
            false => 0,
        };
        ActorSpec {
            offset_ms,
            // ... or a crashed waiter's ticket, which holds up the queue until it expires.
            patience_ms: longest.max(TICKET_LIFETIME_MS)
                + ahead
                + self.skew_ms
                + 2 * self.max_poll_ms
                + fs_clock
                + 2,
            hold_ms: 1,
            ..ActorSpec::new("probe", 1_000, 0)
        }
    }

    /// The same scenario with wake-ups: waiters sleep until what they wait for changes, and
    /// the scheduler may lose one wake-up and cause one for nothing.
    pub fn with_wakeups(&self) -> Self {
        Scenario {
            name: format!("{}+wakeups", self.name),
            wakeups: true,
            lost_wakeups: 1,
            spurious_wakeups: 1,
            ..self.clone()
        }
    }

    /// The same scenario with bounded fairness: a holder may take the lock back until the
    /// first in line has waited the bound, then marks the holder's entry.
    pub fn with_bounded_fairness(&self) -> Self {
        Scenario {
            name: format!("{}+bounded", self.name),
            fairness: Fairness::Bounded,
            ..self.clone()
        }
    }

    /// A scenario drawn from `seed`: 2–4 actors with mixed habits, clocks within the skew,
    /// some of them crashable, with retried-RPC faults and global pauses.
    pub fn random(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5ce7_a710);
        let skew_ms = rng.pick(&[0, 10, 40]);
        let half = (skew_ms / 2) as i64;
        let count = 2 + rng.below(3) as usize;
        let actors: Vec<ActorSpec> = (0..count)
            .map(|i| {
                let timeout_ms = rng.pick(&[60, 100, 150]);
                let offset_ms = match rng.below(4) {
                    0 => -half,
                    1 => half,
                    2 => 0,
                    _ => rng.below(2 * half as u64 + 1) as i64 - half,
                };
                ActorSpec {
                    label: ["A", "B", "C", "D"][i].into(),
                    offset_ms,
                    timeout_ms,
                    patience_ms: rng.pick(&[0, timeout_ms * 2, timeout_ms * 4]),
                    rounds: 1 + rng.below(3) as u32,
                    refreshes: rng.below(3) as u32,
                    hold_ms: rng.pick(&[
                        timeout_ms / 4,
                        timeout_ms / 2,
                        timeout_ms * 3 / 4,
                        timeout_ms + skew_ms + 7,
                    ]),
                    may_crash: rng.chance(300),
                    start_ms: 0,
                    tries_first: rng.chance(500),
                }
            })
            .collect();
        let longest = actors.iter().map(|a| a.timeout_ms).max().unwrap_or(1);
        Scenario {
            name: format!("random-{seed:#x}"),
            min_poll_ms: rng.pick(&[1, 5]),
            max_poll_ms: rng.pick(&[10, 40]),
            faults: rng.below(3) as u32,
            crashes: 1,
            jumps: rng.below(2) as u32,
            jump_ms: longest + skew_ms + 1,
            fs_timestamps: rng.chance(500),
            fs_lag_ms: rng.pick(&[0, 3, 9]),
            fs_granularity_ms: rng.pick(&[1, 4, 10]),
            wakeups: rng.chance(500),
            lost_wakeups: rng.below(3) as u32,
            spurious_wakeups: rng.below(3) as u32,
            fairness: match rng.chance(500) {
                true => Fairness::Bounded,
                false => Fairness::Fifo,
            },
            ..Scenario::new("", skew_ms, actors)
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: max_clock_skew {} ms, poll {}..{} ms; the scheduler may inject {} faults, \
             crash {} time(s), pause one actor {} time(s) for {} ms, pause everyone {} time(s) \
             for {} ms",
            self.name,
            self.skew_ms,
            self.min_poll_ms,
            self.max_poll_ms,
            self.faults,
            self.crashes,
            self.pauses,
            self.pause_ms,
            self.jumps,
            self.jump_ms
        )?;
        if !self.fs_timestamps {
            write!(f, "; the filesystem keeps no timestamps")?;
        } else {
            write!(
                f,
                "; the filesystem's clock lags {} ms, in steps of {} ms",
                self.fs_lag_ms, self.fs_granularity_ms
            )?;
        }
        if self.wakeups {
            write!(
                f,
                "; waiters are woken by changes (the scheduler may lose {} wake-up(s) and \
                 cause {} for nothing)",
                self.lost_wakeups, self.spurious_wakeups
            )?;
        }
        if self.fairness == Fairness::Bounded {
            write!(f, "; bounded fairness")?;
        }
        if let Some(fence) = self.initial_fence {
            write!(f, "; the lock starts as free.{fence}")?;
        }
        for a in &self.actors {
            write!(
                f,
                "\n  {}: clock {:+} ms, timeout {} ms, {}, {} round(s), {} refresh(es), works {} ms{}",
                a.label,
                a.offset_ms,
                a.timeout_ms,
                match (a.patience_ms, a.tries_first) {
                    (0, _) => "try_acquire".to_string(),
                    (p, false) => format!("acquire with patience {p} ms"),
                    (p, true) => format!("try_acquire, then acquire with patience {p} ms"),
                },
                a.rounds,
                a.refreshes,
                a.hold_ms,
                if a.may_crash { ", may crash" } else { "" }
            )?;
        }
        Ok(())
    }
}
