//! The protocol's view of the model: [`Fs`] and [`Env`] whose every call is a scheduling
//! point of one actor.

use lockbydir_protocol::{Env, Fs, FsError};

use super::engine::Engine;
use super::op::{Op, OpResult};

/// The shortest sleep of a waiter polling at the head of the queue, in virtual ms.
const COARSE_SLEEP_MS: u64 = 20;

/// The in-memory filesystem, as one actor sees it.
#[derive(Clone, Copy)]
pub struct ModelFs<'a> {
    /// The schedule.
    pub engine: &'a Engine,
    /// Whose calls these are.
    pub actor: usize,
}

/// Virtual clocks and deterministic randomness, as one actor sees them.
#[derive(Clone, Copy)]
pub struct ModelEnv<'a> {
    /// The schedule.
    pub engine: &'a Engine,
    /// Whose calls these are.
    pub actor: usize,
}

fn unit(result: OpResult) -> Result<(), FsError> {
    match result {
        OpResult::Unit(r) => r,
        other => unreachable!("a directory operation returned {other:?}"),
    }
}

fn time(result: OpResult) -> u64 {
    match result {
        OpResult::Time(t) => t,
        other => unreachable!("a clock returned {other:?}"),
    }
}

impl Fs for ModelFs<'_> {
    fn create_dir(&self, path: &str) -> Result<(), FsError> {
        unit(self.engine.call(self.actor, Op::CreateDir(path.into())))
    }

    fn remove_dir(&self, path: &str) -> Result<(), FsError> {
        unit(self.engine.call(self.actor, Op::RemoveDir(path.into())))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        unit(
            self.engine
                .call(self.actor, Op::Rename(from.into(), to.into())),
        )
    }

    fn modified_ms(&self, path: &str) -> Result<Option<u64>, FsError> {
        if !self.engine.fs_timestamps() {
            // Like the trait's default: nothing to ask the filesystem.
            return Ok(None);
        }
        match self.engine.call(self.actor, Op::Modified(path.into())) {
            OpResult::Stamp(r) => r.map(Some),
            other => unreachable!("modified_ms returned {other:?}"),
        }
    }

    fn exists(&self, path: &str) -> Result<bool, FsError> {
        // One `stat`, whether or not the filesystem keeps timestamps.
        match self.engine.call(self.actor, Op::Modified(path.into())) {
            OpResult::Stamp(Ok(_)) => Ok(true),
            OpResult::Stamp(Err(e)) if e.kind == lockbydir_protocol::FsErrorKind::NotFound => {
                Ok(false)
            }
            OpResult::Stamp(Err(e)) => Err(e),
            other => unreachable!("exists returned {other:?}"),
        }
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        match self.engine.call(self.actor, Op::ReadDir(path.into())) {
            OpResult::Names(r) => r,
            other => unreachable!("read_dir returned {other:?}"),
        }
    }
}

impl Env for ModelEnv<'_> {
    fn now_ms(&self) -> u64 {
        time(self.engine.call(self.actor, Op::NowMs))
    }

    fn monotonic_ms(&self) -> u64 {
        time(self.engine.call(self.actor, Op::MonotonicMs))
    }

    fn sleep_ms(&self, ms: u64) {
        let until = self.engine.now() + ms as i64;
        self.engine.call(self.actor, Op::Sleep { ms, until });
    }

    fn sleep_us(&self, us: u64) {
        // Virtual time has whole milliseconds; a head-of-queue poll of a fraction of one
        // becomes a sleep of COARSE_SLEEP_MS. Finer polls would only add steps that look at
        // the same states. Longer sleeps are rounded up to whole milliseconds.
        match us < 1000 {
            true => self.sleep_ms(COARSE_SLEEP_MS),
            false => self.sleep_ms(us.div_ceil(1000)),
        }
    }

    fn random_u64(&self) -> u64 {
        self.engine.random(self.actor)
    }

    fn wakes_on_change(&self) -> bool {
        // Not a scheduling point: a property of the environment, fixed per scenario.
        self.engine.wakeups()
    }

    fn sleep_until_changed(&self, path: &str, us: u64) {
        let ms = us.div_ceil(1000).max(1);
        let until = self.engine.now() + ms as i64;
        self.engine.call(
            self.actor,
            Op::SleepUntilChanged {
                path: path.into(),
                ms,
                until,
            },
        );
    }
}
