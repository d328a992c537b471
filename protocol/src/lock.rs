//! One named lock as used by one holder: acquire, refresh, release, inspect.
//!
//! # The protocol
//!
//! Lock `N` is the directory `N.lockdir`. Once it exists it always contains exactly one
//! *state entry* (see [`crate::entry`]): `free.<fence>` or
//! `held.<fence>.<since>.<deadline>.<timeout>.<token>.<holder>`. Every change of state is a
//! single `rename` of that entry to a new name inside the same lockdir:
//!
//! | step            | rename                                                    |
//! |-----------------|-----------------------------------------------------------|
//! | acquire (free)  | `free.k` → `held.k+1.<now>.<now+timeout>.…<new token>`     |
//! | take over       | `held.k.…<deadline d>…` (seen with now > d + skew) → `held.k+1.…<new token>` |
//! | refresh         | `held.k.….<d>.…` → `held.k.….<now+timeout>.…` (same token) |
//! | release         | `held.k.…<token>…` → `free.k`                              |
//!
//! The lockdir itself is created once, already containing `free.0`: the entry is made in a
//! private staging directory which is then renamed to `N.lockdir`. That rename fails when
//! `N.lockdir` exists and is not empty, and a lockdir is never empty, so two creators cannot
//! both succeed, and no acquirer ever sees a lockdir without its state.
//!
//! ## Why two holders cannot both get in (the seed's TODO 1)
//!
//! A rename succeeds only if its source name still exists, and exactly one of several
//! concurrent renames of the same source succeeds. So each transition is a compare-and-swap
//! on the *whole* state, including the deadline: two waiters that saw the same stale entry
//! both try to rename that exact name; one wins, the other gets `NotFound`. A holder that
//! refreshed in the meantime changed the name, so a waiter acting on the old, stale name fails.
//! There is no delete-then-recreate step, hence no window where a late breaker removes a fresh
//! lock, and no ABA: the token is fresh per acquisition and the fence grows with every
//! acquisition, so a name never comes back.
//!
//! Release renames the holder's own exact entry to `free.k`. If the lock was taken over, that
//! name is gone and release changes nothing (it reports [`Error::Compromised`]). Refresh is
//! the same compare-and-swap, so a holder learns it lost the lock at its next refresh or
//! release.
//!
//! ## Time (the seed's TODO 2)
//!
//! The holder writes its own timeout and deadline into the entry. A waiter takes the lock over
//! only when its own clock is past that deadline plus `max_clock_skew_ms`; until then it sleeps
//! until the deadline or its own backoff, whichever is first. A holder counts itself valid
//! only until its deadline by its own clock. With clocks that differ by at most the skew, a
//! holder's belief and a takeover never overlap in time. A holder that is paused past its
//! deadline (a stop, a swap storm) can lose the lock without knowing until its next call:
//! that is what the fencing token is for.
//!
//! ## Fencing tokens
//!
//! The fence is part of the entry: `free.k` → `held.k+1`, take over `held.k` → `held.k+1`,
//! release keeps `k`. Since the lockdir is never removed by the protocol, every acquisition's
//! fence is greater than every earlier one's, across processes and hosts.

use crate::entry::{Entry, Holder};
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsError, FsErrorKind};
use crate::name::LockName;

/// How many times one attempt re-reads the state after losing a race before it reports the
/// lock as busy.
const RACE_RETRIES: usize = 16;

/// How many times a read that saw no state entry, or more than one (a rename was in flight
/// while the directory was listed), is repeated before the lockdir counts as broken.
const READ_RETRIES: usize = 8;

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 30_000,
            patience_ms: u64::MAX,
            min_poll_ms: 1,
            max_poll_ms: 50,
            max_clock_skew_ms: 0,
            holder: String::new(),
        }
    }
}

/// The longest timeout accepted: about ten years, far from any overflow.
pub const MAX_TIMEOUT_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

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
    /// Held, within its deadline.
    Held(Holder),
    /// Held, but past its deadline.
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
    options: Options,
    held: Option<Holder>,
}

impl<F: Fs, E: Env> Lock<F, E> {
    /// A handle on lock `name`; creates nothing yet.
    pub fn new(fs: F, env: E, name: &str, options: Options) -> Result<Self, Error> {
        let name = LockName::new(name)?;
        options.validate()?;
        Ok(Lock {
            fs,
            env,
            lockdir: name.lockdir(),
            name,
            options,
            held: None,
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

    /// The lock's state now.
    pub fn inspect(&self) -> Result<LockState, Error> {
        inspect(&self.fs, &self.env, &self.name)
    }

    /// One attempt that never waits.
    pub fn try_acquire(&mut self) -> Result<Outcome, Error> {
        if self.held.is_some() {
            return Err(Error::AlreadyHeld);
        }
        let mut last_seen = None;
        for _ in 0..RACE_RETRIES {
            match self.attempt()? {
                Attempt::Acquired(grant) => return Ok(Outcome::Acquired(grant)),
                Attempt::Busy(holder) => return Ok(Outcome::Busy(Some(holder))),
                // Someone else changed the state between our read and our rename: look again.
                Attempt::LostRace(seen) => last_seen = seen.or(last_seen),
            }
        }
        Ok(Outcome::Busy(last_seen))
    }

    /// Wait until the lock can be taken, then take it; give up after `patience_ms`.
    ///
    /// While the lock is busy this sleeps until the holder's deadline (plus the skew margin)
    /// or the current backoff, whichever is first. The backoff starts at `min_poll_ms` and
    /// doubles up to `max_poll_ms`, with random jitter so that waiters spread out.
    pub fn acquire(&mut self) -> Result<Outcome, Error> {
        let start = self.env.monotonic_ms();
        let mut backoff = self.options.min_poll_ms;
        loop {
            let holder = match self.try_acquire()? {
                Outcome::Acquired(grant) => return Ok(Outcome::Acquired(grant)),
                Outcome::Busy(holder) => holder,
            };
            let waited = self.env.monotonic_ms().saturating_sub(start);
            let patience_left = self.options.patience_ms.saturating_sub(waited);
            if patience_left == 0 {
                return Ok(Outcome::Busy(holder));
            }
            let jittered = backoff / 2 + self.env.random_u64() % (backoff / 2 + 1);
            let mut pause = jittered.max(1);
            if let Some(h) = &holder {
                let takeover_at = h
                    .deadline_ms
                    .saturating_add(self.options.max_clock_skew_ms)
                    .saturating_add(1);
                // Past the deadline by our clock but not by the filesystem's: keep backing off.
                let until = takeover_at.saturating_sub(self.env.now_ms());
                if until > 0 {
                    pause = pause.min(until);
                }
            }
            self.env.sleep_ms(pause.min(patience_left));
            backoff = backoff.saturating_mul(2).min(self.options.max_poll_ms);
        }
    }

    /// Extend the deadline to now + timeout. Returns the new deadline.
    ///
    /// Succeeds even after the deadline if nobody took the lock over meanwhile (the rename is
    /// a compare-and-swap on the exact entry, so nobody can have held it since).
    pub fn refresh(&mut self) -> Result<u64, Error> {
        let held = self.held.as_ref().ok_or(Error::NotHeld)?;
        let now = self.env.now_ms();
        let renewed = Holder {
            deadline_ms: now.saturating_add(held.timeout_ms),
            ..held.clone()
        };
        let from = Entry::Held(held.clone());
        let to = Entry::Held(renewed.clone());
        self.swap(&from, &to, "refresh").map_err(|e| self.lost(e))?;
        let deadline = renewed.deadline_ms;
        self.held = Some(renewed);
        Ok(deadline)
    }

    /// Give the lock up. Changes nothing if it was taken over (reports `Compromised`).
    pub fn release(&mut self) -> Result<Released, Error> {
        let held = self.held.as_ref().ok_or(Error::NotHeld)?;
        let late = self.env.now_ms() > held.deadline_ms;
        let from = Entry::Held(held.clone());
        // PLANTED BUG (b), only with the `planted-bugs` feature and only when a test switches
        // it on: release whatever entry is current, ours or not.
        #[cfg(feature = "planted-bugs")]
        let from =
            crate::planted::release_from(from, || match read_entry(&self.fs, &self.lockdir)? {
                Read::Entry(current) => Ok(Some(current)),
                _ => Ok(None),
            })?;
        let to = Entry::Free { fence: held.fence };
        self.swap(&from, &to, "release").map_err(|e| self.lost(e))?;
        self.held = None;
        Ok(if late {
            Released::Late
        } else {
            Released::InTime
        })
    }

    /// Forget the lock without releasing it, as a crashed holder would (for tests and for
    /// callers that hand the lock to another process).
    pub fn abandon(&mut self) -> Option<Holder> {
        self.held.take()
    }

    /// After a failed compare-and-swap on our own entry: drop our belief and say who has it.
    fn lost(&mut self, err: Error) -> Error {
        if err != Error::NotHeld {
            return err;
        }
        let fence = self.held.take().map_or(0, |h| h.fence);
        let now_held_by = match self.inspect() {
            Ok(LockState::Held(h) | LockState::Expired(h)) => Some(h),
            _ => None,
        };
        Error::Compromised { fence, now_held_by }
    }

    /// Rename our state entry `from` to `to`. `Err(NotHeld)` if `from` is gone.
    fn swap(&self, from: &Entry, to: &Entry, operation: &'static str) -> Result<(), Error> {
        let from_path = format!("{}/{}", self.lockdir, from.encode());
        let to_path = format!("{}/{}", self.lockdir, to.encode());
        match self.fs.rename(&from_path, &to_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind == FsErrorKind::NotFound => {
                // On a network filesystem a retried rename that did succeed can report
                // NotFound: if the state is exactly what we renamed to, it was ours.
                match read_entry(&self.fs, &self.lockdir) {
                    Ok(Read::Entry(now)) if &now == to => Ok(()),
                    _ => Err(Error::NotHeld),
                }
            }
            Err(source) => Err(io(operation, from_path, source)),
        }
    }

    /// The second half of the takeover rule (borg's): the lock must also look expired by the
    /// filesystem's own clock, so a waiter whose clock runs ahead cannot take a live lock.
    ///
    /// The lockdir's mtime is the filesystem's time of the last rename inside it, that is of
    /// the acquisition or refresh that wrote the current deadline. The filesystem's "now" is
    /// the mtime of a probe directory made for the purpose. Both readings come from one clock
    /// (the file server's, on a network filesystem), so client clocks do not matter. A
    /// filesystem without timestamps passes the check (the waiter's own clock decides).
    fn stale_by_filesystem_clock(&self, holder: &Holder) -> Result<bool, Error> {
        let Some(changed) = self
            .fs
            .modified_ms(&self.lockdir)
            .map_err(|e| io("stat", self.lockdir.clone(), e))?
        else {
            return Ok(true);
        };
        let fs_now = filesystem_now(&self.fs, &self.env, &self.name)?;
        Ok(fs_now.is_none_or(|now| now.saturating_sub(changed) > holder.timeout_ms))
    }

    /// One read-decide-rename step.
    fn attempt(&mut self) -> Result<Attempt, Error> {
        let entry = match read_entry(&self.fs, &self.lockdir)? {
            Read::Entry(entry) => entry,
            Read::Unsettled => return Ok(Attempt::LostRace(None)),
            Read::Missing => {
                create_lockdir(&self.fs, &self.env, &self.name)?;
                return Ok(Attempt::LostRace(None));
            }
        };
        let now = self.env.now_ms();
        let took_over = match &entry {
            Entry::Free { .. } => None,
            Entry::Held(h) => {
                if now <= h.deadline_ms.saturating_add(self.options.max_clock_skew_ms)
                    || !self.stale_by_filesystem_clock(h)?
                {
                    return Ok(Attempt::Busy(h.clone()));
                }
                // A takeover means someone stopped or crashed: tidy what crashes leave. Done
                // before the rename, so that nothing lies between gaining the lock and saying so.
                sweep_leftovers(&self.fs, &self.env, &self.name);
                Some(h.clone())
            }
        };
        let mine = Holder {
            label: self.options.holder.clone(),
            fence: entry.fence().saturating_add(1),
            since_ms: now,
            deadline_ms: now.saturating_add(self.options.timeout_ms),
            timeout_ms: self.options.timeout_ms,
            token: self.env.random_u64(),
        };
        let to = Entry::Held(mine.clone());
        #[cfg(not(feature = "planted-bugs"))]
        let swapped = self.swap(&entry, &to, "acquire");
        // PLANTED BUG (a), only with the `planted-bugs` feature and only when a test switches
        // it on: take over by remove + create instead of the rename.
        #[cfg(feature = "planted-bugs")]
        let swapped = crate::planted::take_over_by_remove(
            &self.fs,
            &self.lockdir,
            &entry,
            &to,
            took_over.is_some(),
        )
        .unwrap_or_else(|| self.swap(&entry, &to, "acquire"));
        match swapped {
            Ok(()) => {
                let grant = Grant {
                    fence: mine.fence,
                    deadline_ms: mine.deadline_ms,
                    took_over,
                };
                self.held = Some(mine);
                Ok(Attempt::Acquired(grant))
            }
            Err(Error::NotHeld) => Ok(Attempt::LostRace(took_over)),
            Err(e) => Err(e),
        }
    }
}

impl<F: Fs, E: Env> Drop for Lock<F, E> {
    fn drop(&mut self) {
        if self.held.is_some() {
            // Nobody is left to tell; a lost lock needs no cleanup.
            let _ = self.release();
        }
    }
}

enum Attempt {
    Acquired(Grant),
    Busy(Holder),
    /// The state changed under us; the expired holder we tried to take over, if any.
    LostRace(Option<Holder>),
}

fn io(operation: &'static str, path: String, source: FsError) -> Error {
    Error::Io {
        operation,
        path,
        source,
    }
}

/// What one look at a lockdir found.
enum Read {
    /// No lockdir, or one that stays empty (made by hand, or by the original lockbydir.py):
    /// it carries no state, and creating the lock replaces it.
    Missing,
    /// The state entry.
    Entry(Entry),
    /// Every listing raced with a rename (it showed the entry twice, or not at all) and they
    /// kept changing: the lock is busy changing hands.
    Unsettled,
}

/// Read the state entry of `lockdir`.
///
/// Listing a directory is not atomic with respect to a rename inside it, so a listing can
/// show the old and the new name, or neither. Such a listing is repeated; only one that stays
/// the same every time is believed (an empty one means no state, two entries mean damage).
fn read_entry(fs: &impl Fs, lockdir: &str) -> Result<Read, Error> {
    let mut first: Option<Vec<String>> = None;
    let mut stable = true;
    for _ in 0..READ_RETRIES {
        let mut names = match fs.read_dir(lockdir) {
            Ok(names) => names,
            Err(e) if e.kind == FsErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(io("read-dir", lockdir.to_owned(), e)),
        };
        names.retain(|n| Entry::parse(n).is_some());
        if let [only] = names.as_slice() {
            return Ok(Read::Entry(
                Entry::parse(only).expect("filtered to parseable names"),
            ));
        }
        names.sort();
        match &first {
            None => first = Some(names),
            Some(seen) => stable &= *seen == names,
        }
    }
    let names = first.unwrap_or_default();
    match (stable, names.len()) {
        (false, _) => Ok(Read::Unsettled),
        (true, 0) => Ok(Read::Missing),
        (true, n) => Err(Error::Corrupt {
            path: lockdir.to_owned(),
            detail: format!("{n} state entries: {}", names.join(", ")),
        }),
    }
}

/// Create a directory whose name is ours alone (it carries a fresh random token). On a network
/// filesystem a retried `mkdir` that did succeed reports that the directory exists: with a name
/// nobody else uses, that can only be our own, so it counts as made.
fn create_own_dir(fs: &impl Fs, path: &str) -> Result<(), Error> {
    match fs.create_dir(path) {
        Err(e) if e.kind != FsErrorKind::AlreadyExists => Err(io("create-dir", path.to_owned(), e)),
        _ => Ok(()),
    }
}

/// The filesystem's "now": the mtime of a probe directory made for the purpose (`None` if the
/// filesystem keeps no timestamps).
fn filesystem_now(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<Option<u64>, Error> {
    let probe = format!(".{name}.{:016x}.probe", env.random_u64());
    create_own_dir(fs, &probe)?;
    let now = fs.modified_ms(&probe);
    let _ = fs.remove_dir(&probe);
    now.map_err(|e| io("stat", probe, e))
}

/// Scratch directories (staging and probe) older than this, by the filesystem's clock, were
/// left by a process that crashed while using them.
pub const LEFTOVER_AGE_MS: u64 = 10 * 60 * 1000;

/// Whether `entry` of the lock directory is a scratch directory of lock `name`:
/// `.<name>.<16 hex digits>.staging` or `.probe`.
fn is_scratch_of(entry: &str, name: &LockName) -> bool {
    let Some(rest) = entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(name.as_str()))
    else {
        return false;
    };
    let Some(token) = rest.strip_prefix('.').and_then(|r| {
        r.strip_suffix(".staging")
            .or_else(|| r.strip_suffix(".probe"))
    }) else {
        return false;
    };
    token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Remove lock `name`'s scratch directories that crashed processes left behind, judged old by
/// the filesystem's clock. Best effort: nothing here affects the lock's state, and a filesystem
/// without timestamps is left alone.
fn sweep_leftovers(fs: &impl Fs, env: &impl Env, name: &LockName) {
    let Ok(entries) = fs.read_dir(".") else {
        return;
    };
    let scratch: Vec<String> = entries
        .into_iter()
        .filter(|e| is_scratch_of(e, name))
        .collect();
    if scratch.is_empty() {
        return;
    }
    let Ok(Some(now)) = filesystem_now(fs, env, name) else {
        return;
    };
    for dir in scratch {
        if let Ok(Some(made)) = fs.modified_ms(&dir)
            && now.saturating_sub(made) > LEFTOVER_AGE_MS
        {
            let _ = fs.remove_dir(&format!("{dir}/{}", Entry::Free { fence: 0 }.encode()));
            let _ = fs.remove_dir(&dir);
        }
    }
}

/// Create `N.lockdir` holding `free.0`, unless someone else creates it first.
fn create_lockdir(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<(), Error> {
    let lockdir = name.lockdir();
    let staging = format!(".{name}.{:016x}.staging", env.random_u64());
    let initial = format!("{staging}/{}", Entry::Free { fence: 0 }.encode());
    let cleanup = || {
        let _ = fs.remove_dir(&initial);
        let _ = fs.remove_dir(&staging);
    };
    create_own_dir(fs, &staging)?;
    if let Err(e) = create_own_dir(fs, &initial) {
        cleanup();
        return Err(e);
    }
    if let Err(e) = fs.rename(&staging, &lockdir) {
        cleanup();
        // Losing to another creator is expected: the lockdir exists (and is not empty). Any
        // other failure leaves no lockdir behind.
        if fs.read_dir(&lockdir).is_err() {
            return Err(io("rename", format!("{staging} -> {lockdir}"), e));
        }
    }
    Ok(())
}

/// The state of lock `name` now.
pub fn inspect(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<LockState, Error> {
    let lockdir = name.lockdir();
    for _ in 0..RACE_RETRIES {
        return Ok(match read_entry(fs, &lockdir)? {
            Read::Unsettled => continue,
            Read::Missing => LockState::Absent,
            Read::Entry(Entry::Free { fence }) => LockState::Free(fence),
            Read::Entry(Entry::Held(h)) if env.now_ms() > h.deadline_ms => LockState::Expired(h),
            Read::Entry(Entry::Held(h)) => LockState::Held(h),
        });
    }
    Err(Error::Unsettled { path: lockdir })
}

/// Every lock in the lock directory with its state, sorted by name.
pub fn list_locks(fs: &impl Fs, env: &impl Env) -> Result<Vec<(LockName, LockState)>, Error> {
    let mut names: Vec<LockName> = fs
        .read_dir(".")
        .map_err(|e| io("read-dir", ".".into(), e))?
        .iter()
        .filter_map(|n| LockName::from_lockdir(n))
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let state = inspect(fs, env, &name)?;
        out.push((name, state));
    }
    Ok(out)
}
