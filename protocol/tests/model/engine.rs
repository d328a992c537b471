//! The deterministic scheduler.
//!
//! Every actor runs the real protocol code on its own OS thread, but only one thread runs at
//! a time: the one holding the *turn*. An actor keeps the turn while it computes, and gives it
//! up at each scheduling point (every `Fs` call and every clock read or sleep): it parks with
//! its pending operation, asks the [`Strategy`] what happens next (see [`super::options`]),
//! and hands the turn over. The chosen actor then performs its pending operation as one
//! atomic step on the shared [`super::world::World`] and runs on to its next scheduling
//! point. So a schedule is exactly the sequence of the strategy's choices, and replaying the
//! choices replays the schedule.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use lockbydir_protocol::{FsError, FsErrorKind};

use super::checker::{Checker, Invariant, T0, Violation, token_for};
use super::op::{Op, OpResult};
use super::options::{options, torn};
use super::rng::mix;
use super::scenario::{ActorSpec, Scenario};
use super::state::{Grant, Record, State, Status, Turn};
use super::stats::Stats;
use super::strategy::{Choice, Decision, Fault, Strategy};
use super::trace::{Event, Trace};
use super::world::World;

/// The payload an actor thread unwinds with when it is crashed or stopped.
struct Unwound;

/// One schedule in progress: the shared state and a condition variable per thread.
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
        Engine {
            state: Mutex::new(State::new(scenario, strategy, seed)),
            wake: (0..=scenario.actors.len())
                .map(|_| Condvar::new())
                .collect(),
            controller: Condvar::new(),
        }
    }

    /// Add an actor that starts with the next phase (the probe), driven by `strategy`, with
    /// no more faults, crashes or pauses. Returns its index.
    pub fn add_actor(&self, spec: &ActorSpec, strategy: Box<dyn Strategy>) -> usize {
        let index = lock(&self.state).add_actor(spec, strategy);
        assert!(index < self.wake.len(), "one probe at most");
        index
    }

    /// Run every not yet started actor, each on its own thread with `script(engine, index)`,
    /// until all have finished or crashed. `setup` runs first on each actor thread.
    pub fn run_phase(&self, script: &(dyn Fn(&Engine, usize) + Sync), setup: &(dyn Fn() + Sync)) {
        let fresh: Vec<usize> = {
            let st = lock(&self.state);
            (0..st.actors.len())
                .filter(|&a| matches!(st.actors[a].status, Status::NotStarted))
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
            st.actors[me].status = Status::Running;
        }
        let result = catch_unwind(AssertUnwindSafe(|| script(self, me)));
        let mut st = lock(&self.state);
        st.actors[me].status = match result {
            Ok(()) => Status::Finished,
            Err(payload) if payload.is::<Unwound>() => Status::Crashed,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let who = st.trace.labels[me].clone();
                st.violation.get_or_insert(Violation::new(
                    Invariant::Panic,
                    format!("{who} panicked: {what}"),
                ));
                Status::Finished
            }
        };
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
        st.violation
            .get_or_insert(Violation::new(Invariant::Panic, "the scheduler failed"));
        for cv in &self.wake {
            cv.notify_all();
        }
        self.controller.notify_all();
    }

    fn give_turn(&self, st: &mut State, actor: usize, grant: Grant) {
        st.actors[actor].grant = Some(grant);
        st.turn = Turn::Actor(actor);
        self.wake[actor].notify_one();
    }

    /// The turn holder is done for now: decide what happens next and hand the turn over.
    fn pass_turn(&self, st: &mut State) {
        loop {
            if let Some(a) = st
                .actors
                .iter()
                .position(|a| matches!(a.status, Status::NotStarted))
            {
                // Each new actor first runs up to its first scheduling point.
                st.turn = Turn::Actor(a);
                self.wake[a].notify_one();
                return;
            }
            let Some(first) = st.actors.iter().position(|a| a.pending().is_some()) else {
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
                    Invariant::Liveness,
                    format!(
                        "livelock: the schedule did not end within {} steps",
                        st.max_steps
                    ),
                ));
                continue;
            }
            let options = options(st);
            if options.is_empty() {
                st.violation = Some(Violation::new(
                    Invariant::Liveness,
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
            });
            let choice = options[chosen];
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
                Choice::Pause { actor } => {
                    st.budgets.pauses -= 1;
                    st.checker.stats.pauses += 1;
                    let until = st.t + st.pause_ms as i64;
                    st.actors[actor].frozen_until = until;
                    let t = st.t;
                    st.trace.events.push(Event::Pause { t, actor, until });
                }
                Choice::Tick { to } => {
                    st.trace.events.push(Event::Time {
                        from: st.t,
                        to,
                        pause: false,
                    });
                    st.t = to;
                }
                Choice::Spurious { actor } => {
                    st.budgets.spurious_wakeups -= 1;
                    st.checker.stats.spurious_wakeups += 1;
                    st.actors[actor].woken = true;
                    let t = st.t;
                    st.trace.events.push(Event::Wake {
                        t,
                        actor,
                        lost: false,
                    });
                }
                Choice::Lose { actor } => {
                    st.budgets.lost_wakeups -= 1;
                    st.checker.stats.lost_wakeups += 1;
                    st.actors[actor].woken = false;
                    st.actors[actor].deaf = true;
                    let t = st.t;
                    st.trace.events.push(Event::Wake {
                        t,
                        actor,
                        lost: true,
                    });
                }
                Choice::Jump { to } => {
                    st.budgets.jumps -= 1;
                    st.checker.stats.jumps += 1;
                    st.trace.events.push(Event::Time {
                        from: st.t,
                        to,
                        pause: true,
                    });
                    st.t = to;
                }
            }
        }
    }

    /// A scheduling point of `me`: park with `op`, wait to be picked, then perform it.
    pub fn call(&self, me: usize, op: Op) -> OpResult {
        let mut st = lock(&self.state);
        if let Op::ReadDir(p) = &op {
            // The listing starts now; it may be torn by whatever changes before it ends.
            st.actors[me].listed = st.world.children(p);
        }
        if let Op::SleepUntilChanged { path, .. } = &op {
            // The watch is set now, then the entry looked at: gone already, it wakes at once.
            st.actors[me].woken = !st.world.is_dir(path);
            st.actors[me].deaf = false;
        }
        st.actors[me].status = Status::Parked(op);
        self.pass_turn(&mut st);
        while st.turn != Turn::Actor(me) && !st.broken {
            st = self.wake[me]
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let grant = st.actors[me].grant.take();
        let Some(Grant::Run { fault }) = grant else {
            st.actors[me].status = Status::Crashed;
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
        let Status::Parked(op) = std::mem::replace(&mut st.actors[me].status, Status::Running)
        else {
            unreachable!("a granted actor is parked");
        };
        st.current = Some(me);
        st.last_run = Some(me);
        st.steps += 1;
        let st = &mut *st;
        let actual = Self::perform(st, me, &op);
        let reported = Self::misreport(st, me, &op, fault, &actual);
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
        let mutated = matches!(actual, OpResult::Unit(Ok(())))
            && matches!(op, Op::CreateDir(_) | Op::RemoveDir(_) | Op::Rename(..));
        if mutated {
            Self::notify_watchers(st);
        }
        if let Op::SleepUntilChanged { until, .. } = op {
            if st.t < until {
                st.checker.stats.early_wakeups += 1;
            }
            st.actors[me].woken = false;
            st.actors[me].deaf = false;
        }
        if mutated
            && st.violation.is_none()
            && let Err(v) = st.checker.fs_effect(me, st.t, &op, &st.world)
        {
            st.violation = Some(v);
        }
        st.checker.op_done(
            me,
            &op,
            matches!(actual, OpResult::Unit(Ok(())) | OpResult::Stamp(Ok(_))),
        );
        reported
    }

    /// After a change: wake every sleeper whose watched entry is gone (unless its wake-up
    /// was lost).
    fn notify_watchers(st: &mut State) {
        let world = &st.world;
        for actor in &mut st.actors {
            if let Some(Op::SleepUntilChanged { path, .. }) = actor.pending()
                && !actor.deaf
                && !world.is_dir(path)
            {
                actor.woken = true;
            }
        }
    }

    fn perform(st: &mut State, me: usize, op: &Op) -> OpResult {
        // The filesystem's clock lags and is coarse as the scenario says (`World::stamp`).
        st.world.clock = T0 + st.t;
        match op {
            Op::CreateDir(p) => OpResult::Unit(st.world.create_dir(p)),
            Op::RemoveDir(p) => OpResult::Unit(st.world.remove_dir(p)),
            Op::Rename(a, b) => OpResult::Unit(st.world.rename(a, b)),
            Op::ReadDir(p) => OpResult::Names(st.world.read_dir(p)),
            Op::Modified(p) => OpResult::Stamp(st.world.modified(p).map(|t| t as u64)),
            Op::NowMs => OpResult::Time((T0 + st.t + st.actors[me].offset) as u64),
            // Any origin will do for a monotonic clock; this one is never 0.
            Op::MonotonicMs => OpResult::Time(st.t as u64 + 1_000),
            Op::Sleep { .. } | Op::SleepUntilChanged { .. } => OpResult::Woke,
        }
    }

    /// What the protocol is told about `actual` when `fault` is injected.
    fn misreport(
        st: &State,
        me: usize,
        op: &Op,
        fault: Option<Fault>,
        actual: &OpResult,
    ) -> OpResult {
        let retried = |kind, what: &str| {
            OpResult::Unit(Err(FsError::new(
                kind,
                format!("{what} (a retried RPC whose first try succeeded)"),
            )))
        };
        match (op, fault, actual) {
            (Op::Rename(..), Some(Fault::Retried), OpResult::Unit(Ok(()))) => {
                retried(FsErrorKind::NotFound, "no such file or directory")
            }
            (Op::CreateDir(_), Some(Fault::Retried), OpResult::Unit(Ok(()))) => {
                retried(FsErrorKind::AlreadyExists, "file exists")
            }
            (Op::ReadDir(_), Some(f), OpResult::Names(Ok(after))) => {
                match torn(st.actors[me].listed.as_deref(), Some(after), f) {
                    Some(names) => OpResult::Names(Ok(names)),
                    None => actual.clone(),
                }
            }
            _ => actual.clone(),
        }
    }

    /// Whether the actors' environment wakes sleepers on changes.
    pub fn wakeups(&self) -> bool {
        lock(&self.state).wakeups
    }

    /// Whether the filesystem reports modification times.
    pub fn fs_timestamps(&self) -> bool {
        lock(&self.state).fs_timestamps
    }

    /// Virtual time now: `sleep_ms` parks until this plus the duration.
    pub fn now(&self) -> i64 {
        lock(&self.state).t
    }

    /// `me`'s next random number: deterministic, and a token that names its actor.
    pub fn random(&self, me: usize) -> u64 {
        let mut st = lock(&self.state);
        st.actors[me].randoms += 1;
        let n = st.actors[me].randoms;
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
