//! The state of one schedule, shared by all actor threads behind the engine's mutex.

use lockbydir_protocol::LockName;
use lockbydir_protocol::entry::Entry;

use super::checker::{Checker, T0};
use super::op::Op;
use super::scenario::{ActorSpec, LOCK_NAME, Scenario};
use super::strategy::{Fault, Strategy};
use super::trace::Trace;
use super::world::World;

/// The lock directory a schedule of `scenario` starts with.
fn initial_world(scenario: &Scenario) -> World {
    let mut world = World::with_clock(scenario.fs_lag_ms, scenario.fs_granularity_ms);
    world.clock = T0;
    if let Some(fence) = scenario.initial_fence {
        let lockdir = LockName::new(LOCK_NAME).expect("a valid name").lockdir();
        let free = Entry::Free {
            fence,
            waiters: false,
        };
        world.create_dir(&lockdir).expect("an empty world");
        world
            .create_dir(&format!("{lockdir}/{}", free.encode()))
            .expect("an empty lockdir");
    }
    world
}

/// Who holds the turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// The test thread, between phases.
    Controller,
    /// This actor's thread.
    Actor(usize),
}

/// Where an actor is.
#[derive(Clone, Debug)]
pub enum Status {
    /// Its thread has not run yet.
    NotStarted,
    /// It holds the turn.
    Running,
    /// It waits at a scheduling point to perform this.
    Parked(Op),
    /// Its script ended.
    Finished,
    /// It was crashed (or stopped after a violation): it takes no more steps.
    Crashed,
}

/// What a parked actor is told when it gets the turn.
#[derive(Clone, Copy, Debug)]
pub enum Grant {
    /// Perform the pending operation, misreported with this fault if any.
    Run {
        /// The fault to inject.
        fault: Option<Fault>,
    },
    /// Crash: unwind and never come back.
    Crash,
    /// The schedule is over (a violation was found): unwind without a trace.
    Stop,
}

/// What the strategy may still do to the actors.
#[derive(Clone, Copy, Debug)]
pub struct Budgets {
    /// Injected faults left.
    pub faults: u32,
    /// Crashes left.
    pub crashes: u32,
    /// Single-actor pauses left.
    pub pauses: u32,
    /// Global pauses left.
    pub jumps: u32,
    /// Wake-ups the scheduler may still lose.
    pub lost_wakeups: u32,
    /// Wake-ups for nothing the scheduler may still cause.
    pub spurious_wakeups: u32,
}

/// One decision as taken: enough to replay it and to enumerate its alternatives.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Index of the option taken.
    pub chosen: usize,
    /// How many options there were.
    pub count: usize,
}

/// Per actor.
#[derive(Clone, Debug)]
pub struct Actor {
    /// Where it is.
    pub status: Status,
    /// What it was told to do next.
    pub grant: Option<Grant>,
    /// Whether it may be crashed.
    pub may_crash: bool,
    /// Its clock's offset from virtual time (ms).
    pub offset: i64,
    /// How many random numbers it drew.
    pub randoms: u64,
    /// What its pending listing saw when it started.
    pub listed: Option<Vec<String>>,
    /// It is paused (frozen) until this virtual time.
    pub frozen_until: i64,
    /// Its pending `sleep_until_changed` may end now: the watched entry changed (or was gone
    /// at the start), or the scheduler woke it for nothing.
    pub woken: bool,
    /// The scheduler lost the wake-up of its pending `sleep_until_changed`: it sleeps to the
    /// end, whatever changes.
    pub deaf: bool,
}

impl Actor {
    /// An actor that has not started yet.
    pub fn new(spec: &ActorSpec) -> Self {
        Actor {
            status: Status::NotStarted,
            grant: None,
            may_crash: spec.may_crash,
            offset: spec.offset_ms,
            randoms: 0,
            listed: None,
            frozen_until: i64::MIN,
            woken: false,
            deaf: false,
        }
    }

    /// Its pending operation, if it is parked.
    pub fn pending(&self) -> Option<&Op> {
        match &self.status {
            Status::Parked(op) => Some(op),
            _ => None,
        }
    }

    /// The virtual time before which it cannot go on (asleep or paused), if any.
    pub fn wakes_at(&self) -> Option<i64> {
        let sleep = match self.pending()? {
            Op::Sleep { until, .. } => *until,
            Op::SleepUntilChanged { .. } if self.woken => i64::MIN,
            Op::SleepUntilChanged { until, .. } => *until,
            _ => i64::MIN,
        };
        Some(sleep.max(self.frozen_until))
    }

    /// Whether it can perform its pending operation at virtual time `t`.
    pub fn enabled(&self, t: i64) -> bool {
        self.wakes_at().is_some_and(|w| w <= t)
    }
}

/// Everything about one schedule.
pub struct State {
    /// The filesystem.
    pub world: World,
    /// Virtual time, ms since the start of the schedule.
    pub t: i64,
    /// The actors.
    pub actors: Vec<Actor>,
    /// Seed of the actors' random numbers.
    pub seed: u64,
    /// Who runs.
    pub turn: Turn,
    /// The actor that ran the last step, while it is around.
    pub current: Option<usize>,
    /// The actor that ran the last step, for round-robin.
    pub last_run: Option<usize>,
    /// Steps run.
    pub steps: u64,
    /// A schedule longer than this is a livelock.
    pub max_steps: u64,
    /// What the strategy may still do.
    pub budgets: Budgets,
    /// Length of a single-actor pause (ms).
    pub pause_ms: u64,
    /// Whether the filesystem reports modification times.
    pub fs_timestamps: bool,
    /// Whether the actors' environment has change notification (`Env::wakes_on_change`).
    pub wakeups: bool,
    /// Length of a global pause (ms).
    pub jump_ms: u64,
    /// Who decides.
    pub strategy: Box<dyn Strategy>,
    /// Decisions taken.
    pub decisions: Vec<Record>,
    /// What happened.
    pub trace: Trace,
    /// The invariants.
    pub checker: Checker,
    /// The first violation.
    pub violation: Option<super::checker::Violation>,
    /// A harness failure: every waiting thread gives up.
    pub broken: bool,
}

impl State {
    /// The start of a schedule of `scenario`.
    pub fn new(scenario: &Scenario, strategy: Box<dyn Strategy>, seed: u64) -> Self {
        let labels: Vec<String> = scenario.actors.iter().map(|a| a.label.clone()).collect();
        let offsets: Vec<i64> = scenario.actors.iter().map(|a| a.offset_ms).collect();
        State {
            world: initial_world(scenario),
            t: 0,
            actors: scenario.actors.iter().map(Actor::new).collect(),
            seed,
            turn: Turn::Controller,
            current: None,
            last_run: None,
            steps: 0,
            max_steps: scenario.max_steps,
            budgets: Budgets {
                faults: scenario.faults,
                crashes: scenario.crashes,
                pauses: scenario.pauses,
                jumps: scenario.jumps,
                lost_wakeups: scenario.lost_wakeups,
                spurious_wakeups: scenario.spurious_wakeups,
            },
            pause_ms: scenario.pause_ms,
            fs_timestamps: scenario.fs_timestamps,
            wakeups: scenario.wakeups,
            jump_ms: scenario.jump_ms,
            strategy,
            decisions: Vec::new(),
            trace: Trace {
                labels: labels.clone(),
                offsets: offsets.clone(),
                events: Vec::new(),
            },
            checker: {
                let mut checker = Checker::new(labels, offsets);
                checker.prompt_within_ms = scenario.prompt_probe_within_ms();
                checker.skew_ms = scenario.skew_ms as i64;
                checker
            },
            violation: None,
            broken: false,
        }
    }

    /// Add an actor for the next phase, run by `strategy` with no budgets left.
    pub fn add_actor(&mut self, spec: &ActorSpec, strategy: Box<dyn Strategy>) -> usize {
        self.actors.push(Actor::new(spec));
        self.trace.labels.push(spec.label.clone());
        self.trace.offsets.push(spec.offset_ms);
        self.checker.add_actor(spec.label.clone(), spec.offset_ms);
        self.budgets = Budgets {
            faults: 0,
            crashes: 0,
            pauses: 0,
            jumps: 0,
            lost_wakeups: 0,
            spurious_wakeups: 0,
        };
        self.strategy = strategy;
        self.actors.len() - 1
    }
}
