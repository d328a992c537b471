//! One named lock as used by one holder: acquire, refresh, release, inspect.
//!
//! The lock is written in small files, one job each:
//!
//! - `lock/transitions.rs`: the compare-and-swap steps (acquire, take over, refresh, release,
//!   mark) and the argument why two holders cannot both get in and why fences only grow;
//! - `lock/time.rs`: when an expired lock may be taken over (both clocks, borg's rule);
//! - `lock/queue.rs`: the queue of waiters (tickets: take, renew, withdraw; who is next);
//! - `lock/pacing.rs`: when a waiter looks again, and how long it sleeps meanwhile;
//! - `lock/directory.rs`: reading the state entry, creating the lockdir, tidying leftovers.
//!
//! This file is the public face: [`Lock`], its [`Options`] and what its calls return.

mod directory;
mod pacing;
mod queue;
mod time;
mod transitions;

use std::collections::BTreeMap;

use crate::entry::{Entry, Holder, Ticket};
use crate::env::Env;
use crate::error::Error;
use crate::fs::Fs;
use crate::name::LockName;

use directory::{Read, io, read_entry};
use pacing::Waiting;
use queue::Place;
use transitions::{Attempt, Wait};

pub use crate::limits::MAX_TIMEOUT_MS;
pub use directory::LEFTOVER_AGE_MS;
pub(crate) use directory::filesystem_now;
pub use pacing::HEAD_POLL_US;
pub use queue::TICKET_LIFETIME_MS;
pub use time::{FS_CLOCK_LAG_MS, fs_clock_margin_ms};

/// How many times one attempt re-reads the state after losing a race before it reports the
/// lock as busy.
const RACE_RETRIES: usize = 16;

/// Settings chosen by whoever opens a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How long a held lock stays valid without refresh (ms). Stored in the lockdir.
    pub timeout_ms: u64,
    /// How long [`Lock::acquire`] waits before giving up (ms). 0: one attempt.
    pub patience_ms: u64,
    /// Shortest pause between two looks at a busy lock (ms).
    pub min_poll_ms: u64,
    /// Longest pause between two looks at a busy lock (ms).
    pub max_poll_ms: u64,
    /// How far the clocks of all users of the lock directory may disagree (ms). A lock is
    /// taken over only this long after its deadline.
    pub max_clock_skew_ms: u64,
    /// Label telling others who holds the lock.
    pub holder: String,
    /// Who gets the lock when it is let go while others wait (see [`Fairness`]).
    pub fairness: Fairness,
}

/// Who gets a lock that is let go while others wait. Either way waiters queue, are served
/// among themselves in the order they came, and a lock is only ever taken by one rename of
/// its state entry: the policy decides who tries, never who holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fairness {
    /// First come, first served: once someone waits, the lock goes to the longest waiter at
    /// every release, and a holder that asks again queues behind everyone already waiting.
    /// Every acquisition while others wait is a handover to another waiter (a wake-up).
    Fifo,
    /// Bounded unfairness: a holder that lets go and asks again may take the lock straight
    /// back, ahead of the waiters, while its monotonic clock is less than
    /// [`FAIRNESS_BOUND_US`] past the moment its turn began: when it took the lock while they
    /// waited (its entry marked), or else its first release after a waiter marked its entry
    /// (at most that, plus the hold then under way); its first release after that goes to the
    /// first in line,
    /// and it queues behind the others. Anyone who finds the lock free may take it too, and
    /// each such holder gets the same allowance in turn. The line itself is first come, first
    /// served, so with one looping holder the waiter `k`-th in line waits about `k` times
    /// (bound + hold), while the lock changes processes about once per bound instead of at
    /// every release. The holder decides, so the bound holds however late the waiters run.
    #[default]
    Bounded,
}

/// How long a holder may keep taking the lock back from a waiting line, in
/// [`Fairness::Bounded`], before its next release goes to the line: it may while its
/// monotonic clock ([`crate::Env::monotonic_us`]) reads less than this many microseconds
/// past the first time. An environment whose clock has whole milliseconds only keeps it
/// within the millisecond it began.
pub const FAIRNESS_BOUND_US: u64 = 300;

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 30_000,
            patience_ms: u64::MAX,
            min_poll_ms: 1,
            max_poll_ms: 50,
            max_clock_skew_ms: 0,
            holder: String::new(),
            fairness: Fairness::default(),
        }
    }
}

impl Options {
    /// Check that the options make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::InvalidOption(msg));
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "timeout must be between 1 ms and {MAX_TIMEOUT_MS} ms, not {} ms",
                self.timeout_ms
            ));
        }
        if self.min_poll_ms == 0 {
            return bad("min-poll must be at least 1 ms".into());
        }
        if self.min_poll_ms > self.max_poll_ms {
            return bad(format!(
                "min-poll ({} ms) must not exceed max-poll ({} ms)",
                self.min_poll_ms, self.max_poll_ms
            ));
        }
        if self.max_clock_skew_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "max-clock-skew must be at most {MAX_TIMEOUT_MS} ms, not {} ms",
                self.max_clock_skew_ms
            ));
        }
        Ok(())
    }
}

/// A lock's state at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockState {
    /// No lockdir (or an empty one): nobody ever took the lock.
    Absent,
    /// Free; the last fencing token handed out.
    Free(u64),
    /// Held, and not yet to be taken over: within its deadline, or past it but not yet by
    /// both takeover rules (see [`Lock::inspect`]).
    Held(Holder),
    /// Held, but past its deadline by both takeover rules: the next waiter takes it over.
    Expired(Holder),
}

/// A successful acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token.
    pub fence: u64,
    /// The deadline (ms since the epoch).
    pub deadline_ms: u64,
    /// The expired holder this acquisition took the lock from, if any.
    pub took_over: Option<Holder>,
}

/// How an acquisition attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The lock is now held by this handle.
    Acquired(Grant),
    /// The lock is busy (patience ran out); the holder seen last, if any.
    Busy(Option<Holder>),
}

/// What one step of a wait ([`Lock::acquire_step`]) asks of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The wait is over: the lock is held, or patience ran out (the ticket is kept, as
    /// [`Lock::acquire`] keeps it).
    Done(Outcome),
    /// Sleep about `us` microseconds, or less, then call the step again. With
    /// `until_changed`, the sleep may end as soon as that entry (a path relative to the lock
    /// directory, such as `N.lockdir/held.…` or `N.queue/wait.…`) is renamed or removed:
    /// what [`Env::sleep_until_changed`] does.
    Sleep {
        /// The entry whose change is worth waking for, if any.
        until_changed: Option<String>,
        /// The longest useful sleep (µs).
        us: u64,
    },
}

/// How a release ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Released before the deadline.
    InTime,
    /// The deadline had passed, but nobody had taken the lock over, so nobody else held it
    /// meanwhile.
    Late,
}

/// One lock as used by one holder. Dropping a handle that holds the lock releases it.
pub struct Lock<F: Fs, E: Env> {
    fs: F,
    env: E,
    name: LockName,
    lockdir: String,
    queue_dir: String,
    options: Options,
    held: Option<Holder>,
    /// After this handle released an unmarked entry: the fence of the `free` entry it wrote,
    /// which its next acquire tries first without listing.
    known_free: Option<u64>,
    /// Under bounded fairness, while this handle keeps the lock from a waiting line (see
    /// [`Fairness::Bounded`]): when its turn began (monotonic µs). Its re-takes are marked.
    kept_since: Option<u64>,
    /// This handle's place in the queue while [`Lock::acquire`] waits.
    ticket: Option<Ticket>,
    /// Our place in the queue at the last full look: how many live tickets were ahead, and
    /// the fence then. Each acquisition since moves us up by one (at most), so far back in
    /// a long line a look at the state alone shows we are not next, without listing the queue.
    place: Option<Place>,
    /// The state entry this handle saw at its last look (while waiting).
    last_seen: Option<Entry>,
    /// Whether we removed our ticket's directory (right after our rename took the lock); if
    /// that grant was given back, it is made again with the same place.
    ticket_withdrawn: bool,
    /// When (monotonic ms) this handle first saw each ticket of the queue's last listing:
    /// a ticket stops counting [`TICKET_LIFETIME_MS`] plus the skew margin after that by our
    /// own clock, whatever expiry its name claims (see `Lock::place_among` in `lock/queue.rs`).
    tickets_seen: BTreeMap<Ticket, u64>,
    /// The wait in progress between two [`Lock::acquire_step`]s.
    waiting: Option<Waiting>,
    /// First in line, asleep on the holder's entry: the free entry its release leaves, which
    /// the next look tries to rename straight away.
    after_release: Option<Entry>,
    /// Asleep on the ticket just before ours: that ticket, to tell at the next look whether
    /// its owner was served.
    watched_predecessor: Option<Ticket>,
    /// What the last [`Lock::try_acquire`] saw when it found the lock busy, and when
    /// (monotonic µs): the first step of a wait that begins within [`BUSY_LOOK_FRESH_US`]
    /// takes it as its look instead of looking again (a caller that tries first, to say
    /// once that it waits, and then waits, as the lockbydir host does).
    busy_look: Option<(Wait, u64)>,
}

/// How long what a [`Lock::try_acquire`] that found the lock busy saw serves as the first
/// look of the wait that follows it (µs). Only ever the first sleep's choice rests on it, and
/// every sleep is bounded and followed by a look of its own.
pub const BUSY_LOOK_FRESH_US: u64 = 1_000;

impl<F: Fs, E: Env> Lock<F, E> {
    /// A handle on lock `name`; creates nothing yet.
    pub fn new(fs: F, env: E, name: &str, options: Options) -> Result<Self, Error> {
        let name = LockName::new(name)?;
        options.validate()?;
        Ok(Lock {
            fs,
            env,
            lockdir: name.lockdir(),
            queue_dir: name.queue_dir(),
            name,
            options,
            held: None,
            known_free: None,
            kept_since: None,
            ticket: None,
            place: None,
            last_seen: None,
            ticket_withdrawn: false,
            tickets_seen: BTreeMap::new(),
            waiting: None,
            after_release: None,
            watched_predecessor: None,
            busy_look: None,
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The options this handle was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What this handle believes it holds (not verified against the lock directory).
    pub fn holder(&self) -> Option<&Holder> {
        self.held.as_ref()
    }

    /// The fencing token this handle holds, by its own record.
    pub fn fence(&self) -> Option<u64> {
        self.held.as_ref().map(|h| h.fence)
    }

    /// The lock's state now. A held lock counts as [`LockState::Expired`] only once this
    /// handle could take it over: its clock is past the deadline plus its skew margin, and the
    /// filesystem's clock agrees (the takeover rule of the module documentation, "Time").
    /// Until then it is [`LockState::Held`], also past its deadline. If the filesystem's clock cannot be read (a lock directory this process may
    /// not write to, where no probe can be made), the own clock alone decides.
    pub fn inspect(&self) -> Result<LockState, Error> {
        for _ in 0..RACE_RETRIES {
            return Ok(match read_entry(&self.fs, &self.lockdir)? {
                Read::Unsettled => continue,
                Read::Missing => LockState::Absent,
                Read::Entry(Entry::Free { fence, .. }) => LockState::Free(fence),
                Read::Entry(Entry::Held(h)) => {
                    let by_own_clock = self.env.now_ms()
                        > h.deadline_ms.saturating_add(self.options.max_clock_skew_ms);
                    match by_own_clock && self.stale_by_filesystem_clock(&h).unwrap_or(true) {
                        true => LockState::Expired(h),
                        false => LockState::Held(h),
                    }
                }
            });
        }
        Err(Error::Unsettled {
            path: self.lockdir.clone(),
        })
    }

    /// One attempt that never waits. It respects the queue: a free lock that waiters have
    /// queued for is reported busy (with no holder) rather than taken ahead of them.
    pub fn try_acquire(&mut self) -> Result<Outcome, Error> {
        if self.held.is_some() {
            return Err(Error::AlreadyHeld);
        }
        Ok(match self.attempt_settled()? {
            Attempt::Acquired(grant) => Outcome::Acquired(grant),
            Attempt::Wait(wait) => {
                let holder = wait.holder.clone();
                self.busy_look = Some((wait, self.env.monotonic_us()));
                Outcome::Busy(holder)
            }
            Attempt::LostRace(seen) => Outcome::Busy(seen),
        })
    }

    /// Attempts until one is not a lost race (or [`RACE_RETRIES`] were).
    fn attempt_settled(&mut self) -> Result<Attempt, Error> {
        let mut last_seen = None;
        for _ in 0..RACE_RETRIES {
            match self.attempt()? {
                // Someone else changed the state between our read and our rename: look again.
                Attempt::LostRace(seen) => last_seen = seen.or(last_seen),
                done => return Ok(done),
            }
        }
        Ok(Attempt::LostRace(last_seen))
    }

    /// Wait until the lock can be taken, then take it; give up after `patience_ms`.
    ///
    /// A waiter queues (see the module documentation, "Fairness") and sleeps between looks:
    /// first or second in line it looks every [`HEAD_POLL_US`] whether the state entry is
    /// gone (one `stat`), until the holder's deadline plus the skew margin; further back it
    /// sleeps about half the time it expects the waiters ahead of it to take, judged by the
    /// fences and acquisition times of the holders it saw (until it has seen two, a backoff
    /// that starts at `min_poll_ms` and doubles up to `max_poll_ms`, jittered, and no longer
    /// than `min_poll_ms` per waiter ahead). Far back in a long line it may sleep longer than
    /// `max_poll_ms` (up to `max_poll_ms` per 8 waiters ahead, at most a quarter of a ticket's
    /// lifetime), since each look lists the whole queue.
    ///
    /// When patience runs out, the handle keeps its ticket: called again soon (before the
    /// ticket expires, at most [`TICKET_LIFETIME_MS`] after its last renewal), `acquire` goes on
    /// waiting in the same place, so a caller that waits in slices (to stay responsive, as
    /// the Node and Python wrappers do) is served in its turn rather than queueing again at
    /// the back. Dropping the handle gives the ticket back at once; a handle that is neither
    /// dropped nor used holds up the line only until its ticket expires, like a crashed
    /// waiter. An acquire that got the lock or failed leaves no ticket.
    ///
    /// It is exactly [`Lock::acquire_step`] in a loop, sleeping as each step asks through
    /// this handle's [`Env`]; patience counts from this call.
    pub fn acquire(&mut self) -> Result<Outcome, Error> {
        self.waiting = None;
        loop {
            match self.acquire_step()? {
                Step::Done(outcome) => return Ok(outcome),
                Step::Sleep {
                    until_changed: Some(path),
                    us,
                } => self.env.sleep_until_changed(&path, us),
                Step::Sleep {
                    until_changed: None,
                    us,
                } => self.env.sleep_us(us),
            }
        }
    }

    /// One step of [`Lock::acquire`], for a caller that does the sleeping itself (an async
    /// host that must not block a thread per waiter): look at the lock, take or renew a
    /// ticket, and return either the outcome or how long to sleep before the next step.
    /// A step never sleeps.
    ///
    /// The contract:
    ///
    /// - The first step of a wait starts its patience; each step after a
    ///   [`Step::Sleep`] goes on with the same wait, until a [`Step::Done`] or an error ends
    ///   it (the next step then starts a new wait, keeping a ticket that patience's end left,
    ///   as `acquire` in slices does).
    /// - Between two steps, sleep at most `us`. With `until_changed`, end the sleep early when
    ///   that entry is renamed or removed: arm the watch first, then check that the entry
    ///   still exists (if not, step again at once), so that no change falls between the two.
    ///   A caller that cannot watch sleeps the whole `us`; it is slower, never wrong.
    /// - Early steps (a wake-up for nothing, a timer that fires first) cost one look, a few
    ///   system calls, and are never wrong: every step looks before it acts.
    /// - Late steps delay the wait, and whoever is behind it: `us` is also when the ticket
    ///   must be renewed, and a ticket not renewed for [`TICKET_LIFETIME_MS`] counts as a dead
    ///   waiter's; others then remove it, and the next step queues again, at the back. A step
    ///   after patience ended returns [`Outcome::Busy`].
    /// - Dropping the handle, or [`Lock::cancel_wait`], withdraws the ticket at once: the wait
    ///   never takes the lock after that.
    pub fn acquire_step(&mut self) -> Result<Step, Error> {
        if self.held.is_some() {
            self.waiting = None;
            return Err(Error::AlreadyHeld);
        }
        // A ticket kept from an earlier wait that expired meanwhile lost its place: others
        // may have removed it and served those behind it. Queue again, at the back.
        if self.waiting.is_none()
            && self
                .ticket
                .is_some_and(|t| self.env.now_ms() > t.expires_ms)
        {
            self.leave_queue();
        }
        let step = self.wait_step();
        match &step {
            Ok(Step::Sleep { .. }) => {}
            Ok(Step::Done(Outcome::Busy(_))) => self.waiting = None,
            Ok(Step::Done(Outcome::Acquired(_))) | Err(_) => {
                self.waiting = None;
                self.leave_queue();
            }
        }
        step
    }

    /// Give up a wait begun with [`Lock::acquire_step`] (or kept after patience ran out):
    /// withdraw the ticket, so that those behind move up at once. Changes nothing for a
    /// handle that holds the lock or does not wait.
    pub fn cancel_wait(&mut self) {
        self.waiting = None;
        self.leave_queue();
    }

    /// Forget the lock without releasing it, as a crashed holder would (for tests and for
    /// callers that hand the lock to another process).
    pub fn abandon(&mut self) -> Option<Holder> {
        self.held.take()
    }
}

impl<F: Fs, E: Env> Drop for Lock<F, E> {
    fn drop(&mut self) {
        if self.held.is_some() {
            // Nobody is left to tell; a lost lock needs no cleanup.
            let _ = self.release();
        }
        self.leave_queue();
    }
}

/// The state of lock `name` now, as a handle with no skew margin sees it (see
/// [`Lock::inspect`]).
pub fn inspect(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<LockState, Error> {
    Lock::new(fs, env, name.as_str(), Options::default())?.inspect()
}

/// One lock found by [`list_locks`]: its name, and its state or why it cannot be read.
pub type ListedLock = (LockName, Result<LockState, Error>);

/// Every lock in the lock directory with its state, sorted by name. Only a lock directory
/// that cannot be listed fails the whole call; a lockdir that cannot be read, or holds
/// something the protocol never writes, is listed with its own error, among the others.
pub fn list_locks(fs: &impl Fs, env: &impl Env) -> Result<Vec<ListedLock>, Error> {
    let mut names: Vec<LockName> = fs
        .read_dir(".")
        .map_err(|e| io("read-dir", ".".into(), e))?
        .iter()
        .filter_map(|n| LockName::from_lockdir(n))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let state = inspect(fs, env, &name);
            (name, state)
        })
        .collect())
}
