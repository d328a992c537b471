//! The deterministic scheduler.
//!
//! Every actor runs the real protocol code on its own OS thread, but only one thread runs at
//! a time: the one holding the *turn*. An actor keeps the turn while it computes, and gives it
//! up at each scheduling point (every `Fs` call and every clock read or sleep): it parks with
//! its pending operation, asks the [`Strategy`] what happens next, and hands the turn over.
//! The chosen actor then performs its pending operation as one atomic step on the shared
//! [`World`] and runs on to its next scheduling point. So a schedule is exactly the sequence
//! of the strategy's choices, and replaying the choices replays the schedule.
//!
//! Besides running an actor, the strategy may move virtual time to the next sleeper's
//! wake-up (pausing whoever could run), pause everyone while time jumps, crash the actor that
//! just stopped at a scheduling point, or make a successful rename / create_dir report
//! failure. Budgets in the [`Scenario`] bound the last three.
//!
//! Two reductions keep exhaustive search affordable without losing behaviours:
//! - Before a *private* step of the running actor (inside its own staging directory, whose
//!   name holds its random token), no other option is offered: the step commutes with every
//!   other actor's step and with time, so stopping the actor there is the same as stopping it
//!   one step later.
//! - Before a clock read of the running actor, the only other option is a pause (time
//!   passes): running another actor first, with no time passing, is the same as running it
//!   right after the read.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use lockbydir_protocol::{FsError, FsErrorKind};

use super::checker::{Checker, T0, Violation, token_for};
use super::op::{Op, OpResult};
use super::rng::mix;
use super::scenario::{ActorSpec, Scenario};
use super::stats::Stats;
use super::strategy::{Choice, Decision, Fault, Strategy};
use super::trace::{Event, Trace};
use super::world::World;

/// What the scheduler can do next, with whether it counts as a preemption (something else
/// happens although the actor that ran last could go on).
pub type Options = Vec<(Choice, bool)>;

/// One decision as taken: enough to replay it and to enumerate its alternatives.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Index of the option taken.
    pub chosen: usize,
    /// How many options there were.
    pub count: usize,
    /// Bit `i` set: option `i` is a preemption.
    pub preemptive: u64,
}

/// Who holds the turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    Controller,
    Actor(usize),
}

#[derive(Clone, Debug)]
enum Status {
    NotStarted,
    Running,
    Parked(Op),
    Finished,
    Crashed,
}

/// What a parked actor is told when it gets the turn.
#[derive(Clone, Copy, Debug)]
enum Grant {
    Run {
        fault: Option<Fault>,
    },
    Crash,
    /// The schedule is over (a violation was found): unwind without a trace.
    Stop,
}

/// The payload an actor thread unwinds with when it is crashed or stopped.
struct Unwound;

struct Budgets {
    faults: u32,
    crashes: u32,
    jumps: u32,
}

struct State {
    world: World,
    /// Virtual time, ms since the start of the schedule.
    t: i64,
    status: Vec<Status>,
    grants: Vec<Option<Grant>>,
    may_crash: Vec<bool>,
    offsets: Vec<i64>,
    randoms: Vec<u64>,
    /// Per actor: what its pending listing saw when it started.
    listed: Vec<Option<Vec<String>>>,
    seed: u64,
    turn: Turn,
    /// The actor that ran the last step, if it may go on.
    current: Option<usize>,
    /// The last decision moved time (so moving it again extends the same pause).
    pausing: bool,
    steps: u64,
    max_steps: u64,
    budgets: Budgets,
    jump_ms: u64,
    strategy: Box<dyn Strategy>,
    decisions: Vec<Record>,
    trace: Trace,
    checker: Checker,
    violation: Option<Violation>,
    /// A harness failure: every waiting thread unwinds.
    broken: bool,
}

/// One schedule in progress: the shared world, the actors' states and the strategy.
pub struct Engine {
    state: Mutex<State>,
    wake: Vec<Condvar>,
    controller: Condvar,
}

/// What one schedule produced.
pub struct Outcome {
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// The decisions taken (replaying their `chosen` replays the schedule).
    pub decisions: Vec<Record>,
    /// Everything that happened.
    pub trace: Trace,
    /// Counters.
    pub stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// A schedule of `scenario` (plus room for one probe actor) driven by `strategy`; `seed`
    /// makes the actors' random numbers.
    pub fn new(scenario: &Scenario, strategy: Box<dyn Strategy>, seed: u64) -> Self {
        let n = scenario.actors.len();
        let labels: Vec<String> = scenario.actors.iter().map(|a| a.label.clone()).collect();
        let offsets: Vec<i64> = scenario.actors.iter().map(|a| a.offset_ms).collect();
        let state = State {
            world: World::new(),
            t: 0,
            status: vec![Status::NotStarted; n],
            grants: vec![None; n],
            may_crash: scenario.actors.iter().map(|a| a.may_crash).collect(),
            offsets: offsets.clone(),
            randoms: vec![0; n],
            listed: vec![None; n],
            seed,
            turn: Turn::Controller,
            current: None,
            pausing: false,
            steps: 0,
            max_steps: scenario.max_steps,
            budgets: Budgets {
                faults: scenario.faults,
                crashes: scenario.crashes,
                jumps: scenario.jumps,
            },
            jump_ms: scenario.jump_ms,
            strategy,
            decisions: Vec::new(),
            trace: Trace {
                labels: labels.clone(),
                offsets: offsets.clone(),
                events: Vec::new(),
            },
            checker: Checker::new(labels, offsets),
            violation: None,
            broken: false,
        };
        Engine {
            state: Mutex::new(state),
            wake: (0..=n).map(|_| Condvar::new()).collect(),
            controller: Condvar::new(),
        }
    }

    /// Add an actor that starts with the next phase (the probe), driven by `strategy`, with
    /// no more faults, crashes or pauses. Returns its index.
    pub fn add_actor(&self, spec: &ActorSpec, strategy: Box<dyn Strategy>) -> usize {
        let mut st = lock(&self.state);
        let st = &mut *st;
        st.status.push(Status::NotStarted);
        st.grants.push(None);
        st.may_crash.push(false);
        st.offsets.push(spec.offset_ms);
        st.randoms.push(0);
        st.listed.push(None);
        st.trace.labels.push(spec.label.clone());
        st.trace.offsets.push(spec.offset_ms);
        st.checker.add_actor(spec.label.clone(), spec.offset_ms);
        st.budgets = Budgets {
            faults: 0,
            crashes: 0,
            jumps: 0,
        };
        st.strategy = strategy;
        assert!(st.status.len() <= self.wake.len(), "one probe at most");
        st.status.len() - 1
    }

    /// Run every not yet started actor, each on its own thread with `script(engine, index)`,
    /// until all have finished or crashed. `setup` runs first on each actor thread.
    pub fn run_phase(&self, script: &(dyn Fn(&Engine, usize) + Sync), setup: &(dyn Fn() + Sync)) {
        let fresh: Vec<usize> = {
            let st = lock(&self.state);
            (0..st.status.len())
                .filter(|&a| matches!(st.status[a], Status::NotStarted))
                .collect()
        };
        std::thread::scope(|s| {
            for &me in &fresh {
                s.spawn(move || {
                    setup();
                    self.actor_main(me, script);
                });
            }
            let mut st = lock(&self.state);
            self.pass_turn(&mut st);
            while st.turn != Turn::Controller && !st.broken {
                st = self
                    .controller
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        });
    }

    /// Check the world with the checker (at rest between phases), recording a violation.
    pub fn check_world(&self, f: impl FnOnce(&mut Checker, &World) -> Result<(), Violation>) {
        let mut st = lock(&self.state);
        let st = &mut *st;
        if st.violation.is_none()
            && let Err(v) = f(&mut st.checker, &st.world)
        {
            st.violation = Some(v);
        }
    }

    /// Whether a violation has been found.
    pub fn violated(&self) -> bool {
        lock(&self.state).violation.is_some()
    }

    /// Consume the engine: what the schedule produced.
    pub fn finish(self) -> Outcome {
        let st = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut stats = st.checker.stats;
        stats.schedules = 1;
        stats.steps = st.steps;
        stats.longest = st.steps;
        Outcome {
            violation: st.violation,
            decisions: st.decisions,
            trace: st.trace,
            stats,
        }
    }

    fn actor_main(&self, me: usize, script: &(dyn Fn(&Engine, usize) + Sync)) {
        {
            let mut st = lock(&self.state);
            while st.turn != Turn::Actor(me) && !st.broken {
                st = self.wake[me]
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if st.broken {
                return;
            }
            st.status[me] = Status::Running;
        }
        let result = catch_unwind(AssertUnwindSafe(|| script(self, me)));
        let mut st = lock(&self.state);
        match result {
            Ok(()) => st.status[me] = Status::Finished,
            Err(payload) if payload.is::<Unwound>() => st.status[me] = Status::Crashed,
            Err(payload) => {
                st.status[me] = Status::Finished;
                let what = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let who = st.trace.labels[me].clone();
                st.violation.get_or_insert(Violation::new(
                    super::checker::Invariant::Panic,
                    format!("{who} panicked: {what}"),
                ));
            }
        }
        if st.current == Some(me) {
            st.current = None;
        }
        if catch_unwind(AssertUnwindSafe(|| self.pass_turn(&mut st))).is_err() {
            self.break_down(&mut st);
        }
    }

    /// The harness itself failed: wake everyone so that the run ends instead of hanging.
    fn break_down(&self, st: &mut State) {
        st.broken = true;
        st.violation.get_or_insert(Violation::new(
            super::checker::Invariant::Panic,
            "the scheduler failed",
        ));
        for cv in &self.wake {
            cv.notify_all();
        }
        self.controller.notify_all();
    }

    fn give_turn(&self, st: &mut State, actor: usize, grant: Grant) {
        st.grants[actor] = Some(grant);
        st.turn = Turn::Actor(actor);
        self.wake[actor].notify_one();
    }

    /// The options at this point. The first is the default and never a preemption: the
    /// actor that ran last goes on, else the first one that can run, else time passes.
    fn options(st: &State) -> Options {
        let parked = |a: usize| match &st.status[a] {
            Status::Parked(op) => Some(op),
            _ => None,
        };
        let enabled: Vec<usize> = (0..st.status.len())
            .filter(|&a| match parked(a) {
                Some(Op::Sleep { until, .. }) => *until <= st.t,
                Some(_) => true,
                None => false,
            })
            .collect();
        let cur = st.current.filter(|c| enabled.contains(c));
        // Reductions (see the module docs): before a private step of the running actor
        // nothing else is worth doing; before a clock read only a pause is.
        let cur_op = cur.and_then(parked);
        let private = cur_op.is_some_and(Op::is_private);
        let only_pause = private || cur_op.is_some_and(Op::reads_clock);
        let order: Vec<usize> = cur
            .into_iter()
            .chain(
                enabled
                    .iter()
                    .copied()
                    .filter(|&a| Some(a) != cur && !only_pause),
            )
            .collect();
        let preempts = |a: usize| cur.is_some_and(|c| c != a);
        let mut out: Options = order
            .iter()
            .map(|&a| {
                (
                    Choice::Run {
                        actor: a,
                        fault: None,
                    },
                    preempts(a),
                )
            })
            .collect();
        // Time passes: to the next sleeper's wake-up. The default when nobody can run;
        // otherwise it pauses everyone who could.
        let next_wake = (0..st.status.len())
            .filter_map(|a| match parked(a) {
                Some(Op::Sleep { until, .. }) if *until > st.t => Some(*until),
                _ => None,
            })
            .min();
        // Starting a pause costs one preemption; making it longer is free.
        let pausing = !enabled.is_empty() && !st.pausing;
        if let Some(to) = next_wake.filter(|_| !private) {
            out.push((Choice::Tick { to }, pausing));
        }
        // A crash of the actor that just reached a scheduling point: between any two of its
        // operations (crashing an actor later, without running it, ends the same way).
        if let Some(c) = st.current
            && st.budgets.crashes > 0
            && st.may_crash[c]
            && parked(c).is_some()
        {
            out.push((Choice::Crash { actor: c }, false));
        }
        if st.budgets.faults > 0 {
            for &a in &order {
                for fault in Self::faults(st, a) {
                    out.push((
                        Choice::Run {
                            actor: a,
                            fault: Some(fault),
                        },
                        preempts(a),
                    ));
                }
            }
        }
        if st.budgets.jumps > 0 && st.jump_ms > 0 && !private {
            out.push((
                Choice::Jump {
                    to: st.t + st.jump_ms as i64,
                },
                pausing,
            ));
        }
        out
    }

    /// The faults that could be injected into `actor`'s pending operation: a retried RPC
    /// for a rename or create_dir that will succeed; a torn result for a listing of a
    /// directory that changed while the actor was waiting to list it.
    fn faults(st: &State, actor: usize) -> Vec<Fault> {
        let Status::Parked(op) = &st.status[actor] else {
            return Vec::new();
        };
        match op {
            Op::Rename(from, to) if st.world.check_rename(from, to).is_ok() => vec![Fault::Retried],
            Op::CreateDir(p) if st.world.check_create(p).is_ok() => vec![Fault::Retried],
            Op::ReadDir(p) => [Fault::ListingShowsBoth, Fault::ListingShowsNeither]
                .into_iter()
                .filter(|&f| {
                    Self::torn(
                        st.listed[actor].as_deref(),
                        st.world.children(p).as_deref(),
                        f,
                    )
                    .is_some()
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// What a listing that started when it saw `before` and ended seeing `after` shows with
    /// `fault`; `None` if that is no different from `after`.
    fn torn(
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

    /// The turn holder is done for now: decide what happens next and hand the turn over.
    fn pass_turn(&self, st: &mut State) {
        loop {
            if let Some(a) = st
                .status
                .iter()
                .position(|s| matches!(s, Status::NotStarted))
            {
                // Each new actor first runs up to its first scheduling point.
                st.turn = Turn::Actor(a);
                self.wake[a].notify_one();
                return;
            }
            let live: Vec<usize> = (0..st.status.len())
                .filter(|&a| matches!(st.status[a], Status::Parked(_)))
                .collect();
            let Some(&first) = live.first() else {
                st.turn = Turn::Controller;
                self.controller.notify_one();
                return;
            };
            if st.violation.is_some() {
                self.give_turn(st, first, Grant::Stop);
                return;
            }
            if st.steps >= st.max_steps {
                st.violation = Some(Violation::new(
                    super::checker::Invariant::Liveness,
                    format!(
                        "livelock: the schedule did not end within {} steps",
                        st.max_steps
                    ),
                ));
                continue;
            }
            let options = Self::options(st);
            if options.is_empty() {
                st.violation = Some(Violation::new(
                    super::checker::Invariant::Liveness,
                    "deadlock: actors are waiting but nothing can happen",
                ));
                continue;
            }
            let decision = Decision {
                index: st.decisions.len(),
                step: st.steps,
                current: st.current,
                options: &options,
            };
            let chosen = st.strategy.choose(&decision).min(options.len() - 1);
            st.decisions.push(Record {
                chosen,
                count: options.len(),
                preemptive: options
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, p))| *p)
                    .fold(0, |bits, (i, _)| bits | 1 << i),
            });
            let (choice, preemptive) = options[chosen];
            st.pausing = matches!(choice, Choice::Tick { .. } | Choice::Jump { .. });
            match choice {
                Choice::Run { actor, fault } => {
                    self.give_turn(st, actor, Grant::Run { fault });
                    return;
                }
                Choice::Crash { actor } => {
                    st.budgets.crashes -= 1;
                    self.give_turn(st, actor, Grant::Crash);
                    return;
                }
                Choice::Tick { to } | Choice::Jump { to } => {
                    let pause = matches!(choice, Choice::Jump { .. });
                    if pause {
                        st.budgets.jumps -= 1;
                        st.checker.stats.jumps += 1;
                    } else if preemptive {
                        st.checker.stats.pauses += 1;
                    }
                    st.trace.events.push(Event::Time {
                        from: st.t,
                        to,
                        pause,
                    });
                    st.t = to;
                    // Nobody is running now: whoever runs next is not a preemption.
                    st.current = None;
                }
            }
        }
    }

    /// A scheduling point of `me`: park with `op`, wait to be picked, then perform it.
    pub fn call(&self, me: usize, op: Op) -> OpResult {
        let mut st = lock(&self.state);
        if let Op::ReadDir(p) = &op {
            // The listing starts now; it may be torn by whatever changes before it ends.
            st.listed[me] = st.world.children(p);
        }
        st.status[me] = Status::Parked(op);
        self.pass_turn(&mut st);
        while st.turn != Turn::Actor(me) && !st.broken {
            st = self.wake[me]
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let grant = st.grants[me].take();
        let Some(Grant::Run { fault }) = grant else {
            st.status[me] = Status::Crashed;
            if st.current == Some(me) {
                st.current = None;
            }
            if matches!(grant, Some(Grant::Crash)) {
                let t = st.t;
                st.trace.events.push(Event::Crash { t, actor: me });
                st.checker.crashed(me);
            }
            drop(st);
            resume_unwind(Box::new(Unwound));
        };
        let Status::Parked(op) = std::mem::replace(&mut st.status[me], Status::Running) else {
            unreachable!("a granted actor is parked");
        };
        st.current = Some(me);
        st.steps += 1;
        let st = &mut *st;
        let result = Self::perform(st, me, &op);
        let actual = result.clone();
        let mutated = matches!(result, OpResult::Unit(Ok(())))
            && matches!(op, Op::CreateDir(_) | Op::RemoveDir(_) | Op::Rename(..));
        let reported = match (&op, fault, &result) {
            (Op::Rename(..), Some(Fault::Retried), OpResult::Unit(Ok(()))) => {
                OpResult::Unit(Err(FsError::new(
                    FsErrorKind::NotFound,
                    "no such file or directory (a retried RPC whose first try succeeded)",
                )))
            }
            (Op::CreateDir(_), Some(Fault::Retried), OpResult::Unit(Ok(()))) => {
                OpResult::Unit(Err(FsError::new(
                    FsErrorKind::AlreadyExists,
                    "file exists (a retried RPC whose first try succeeded)",
                )))
            }
            (Op::ReadDir(_), Some(f), OpResult::Names(Ok(after))) => {
                match Self::torn(st.listed[me].as_deref(), Some(after), f) {
                    Some(names) => OpResult::Names(Ok(names)),
                    None => result,
                }
            }
            _ => result,
        };
        let injected = fault.filter(|_| reported != actual);
        if let Some(f) = injected {
            st.budgets.faults -= 1;
            st.checker.fault_injected(me, f);
        }
        st.trace.events.push(Event::Step {
            step: st.steps,
            t: st.t,
            actor: me,
            op: op.clone(),
            result: reported.clone(),
            fault: injected,
        });
        if mutated
            && st.violation.is_none()
            && let Err(v) = st.checker.fs_effect(me, &op, &st.world)
        {
            st.violation = Some(v);
        }
        reported
    }

    fn perform(st: &mut State, me: usize, op: &Op) -> OpResult {
        match op {
            Op::CreateDir(p) => OpResult::Unit(st.world.create_dir(p)),
            Op::RemoveDir(p) => OpResult::Unit(st.world.remove_dir(p)),
            Op::Rename(a, b) => OpResult::Unit(st.world.rename(a, b)),
            Op::ReadDir(p) => OpResult::Names(st.world.read_dir(p)),
            Op::NowMs => OpResult::Time((T0 + st.t + st.offsets[me]) as u64),
            // Any origin will do for a monotonic clock; this one is never 0.
            Op::MonotonicMs => OpResult::Time(st.t as u64 + 1_000),
            Op::Sleep { .. } => OpResult::Woke,
        }
    }

    /// Virtual time now: `sleep_ms` parks until this plus the duration.
    pub fn now(&self) -> i64 {
        lock(&self.state).t
    }

    /// `me`'s next random number: deterministic, and a token that names its actor.
    pub fn random(&self, me: usize) -> u64 {
        let mut st = lock(&self.state);
        st.randoms[me] += 1;
        let n = st.randoms[me];
        token_for(me, mix(st.seed ^ mix(me as u64) ^ n))
    }

    /// `me` starts a lock call (faults injected from now on are blamed on it).
    pub fn begin_call(&self, me: usize) {
        lock(&self.state).checker.call_begins(me);
    }

    /// Let the checker look at what `me` just saw, at the current time; note `text` in the
    /// trace and record a violation.
    pub fn observe(
        &self,
        me: usize,
        text: impl FnOnce() -> String,
        check: impl FnOnce(&mut Checker, i64) -> Result<(), Violation>,
    ) {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let t = st.t;
        st.trace.events.push(Event::Note {
            t,
            actor: me,
            text: text(),
        });
        if st.violation.is_none()
            && let Err(v) = check(&mut st.checker, t)
        {
            st.violation = Some(v);
        }
    }
}
