//! The lock from plain Rust: a lock directory, a builder per lock, and guards that release
//! on drop, in the style of `fd-lock` and cargo's `flock.rs`.
//!
//! This is the same protocol as everything else in lockbydir ([`Lock`] over [`StdFs`] and
//! [`StdEnv`]), so native guards take turns with `lockbydir exec`, `lockbydir run` plugins
//! and the Node and Python wrappers on the same lock directory. On Linux waiters are woken
//! by inotify ([`crate::notify::NotifyEnv`]): each sleeps on the one name it waits for
//! instead of polling.
//!
//! Contention is a value, not an error: [`LockBuilder::try_lock`] and
//! [`LockBuilder::try_lock_for`] return [`Attempt::Busy`] (with the holder seen, if any) when
//! the lock stays taken. Errors ([`Error`]) are for what went wrong: a bad name or option,
//! the filesystem, a damaged lockdir, and a lock that was lost ([`Error::Compromised`]).
//!
//! # Examples
//!
//! A whole program: take lock `nightly`, work under it, let it go.
//!
// ANCHOR: first-example
//! ```
//! use std::time::Duration;
//! use lockbydir_protocol::guard::LockDir;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let locks = LockDir::create(std::env::temp_dir().join("my-locks"))?;
//!     let guard = locks.lock("nightly").lease(Duration::from_secs(30)).lock()?;
//!     // The work; pass guard.fence() to whatever checks fences.
//!     println!("holding lock `nightly` with fence {}", guard.fence());
//!     guard.release()?; // Err(Error::Compromised { .. }) if it was taken over meanwhile
//!     Ok(())
//! }
//! ```
// ANCHOR_END: first-example
//!
//! Contention as a value, and a second look while the lock is held:
//!
//! ```
//! use std::time::Duration;
//! use lockbydir_protocol::guard::{Attempt, LockDir};
//!
//! # let path = std::env::temp_dir().join(format!("lockbydir-doc-guard-{}", std::process::id()));
//! let locks = LockDir::create(&path)?; // open() if it must exist already
//! let guard = locks.lock("nightly").lease(Duration::from_secs(30)).holder("backup").lock()?;
//! // work, passing guard.fence() to whatever checks fences; guard.refresh() for long jobs
//! assert!(matches!(locks.lock("nightly").try_lock()?, Attempt::Busy(Some(h)) if h.label == "backup"));
//! guard.release()?; // Err(Error::Compromised { .. }) if it was taken over meanwhile
//! assert!(matches!(locks.lock("nightly").try_lock()?, Attempt::Acquired(_)));
//! # std::fs::remove_dir_all(&path).unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::entry::Holder;
use crate::env::StdEnv;
use crate::error::Error;
use crate::fs::{FsError, StdFs};
use crate::lock::{Fairness, Grant, Lock, LockState, Options, Outcome, Released};
use crate::name::LockName;
#[cfg(target_os = "linux")]
use crate::notify::NotifyEnv;

pub mod keep_alive;

pub use keep_alive::KeepAlive;

/// A lock directory that exists: where the lockdirs of named locks live.
#[derive(Clone, Debug)]
pub struct LockDir {
    path: PathBuf,
}

/// Why a lock directory cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenError {
    /// The lock directory, as given.
    pub path: PathBuf,
    /// What the filesystem said (or that it is not a directory).
    pub source: FsError,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock directory {} cannot be used: {} (create it first, or use LockDir::create, \
             or pass another directory)",
            self.path.display(),
            self.source.message
        )
    }
}

impl std::error::Error for OpenError {}

impl LockDir {
    /// The lock directory at `path`, which must exist and be a directory. Nothing is
    /// created; the lockdirs inside are made on first use.
    pub fn open(path: impl AsRef<Path>) -> Result<LockDir, OpenError> {
        let path = path.as_ref().to_path_buf();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(LockDir { path }),
            Ok(_) => Err(OpenError {
                path,
                source: FsError::new(crate::fs::FsErrorKind::Other, "it is not a directory"),
            }),
            Err(e) => Err(OpenError {
                path,
                source: e.into(),
            }),
        }
    }

    /// The lock directory at `path`, created first (with its parents) if it is missing.
    pub fn create(path: impl AsRef<Path>) -> Result<LockDir, OpenError> {
        let path = path.as_ref();
        std::fs::create_dir_all(path).map_err(|e| OpenError {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        LockDir::open(path)
    }

    /// The lock directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A builder for lock `name` in this directory. Nothing is checked or touched until
    /// [`LockBuilder::lock`], [`LockBuilder::try_lock`] or [`LockBuilder::try_lock_for`].
    pub fn lock(&self, name: &str) -> LockBuilder {
        LockBuilder {
            path: self.path.clone(),
            name: name.to_owned(),
            options: Options {
                holder: default_holder(),
                ..Options::default()
            },
        }
    }

    /// The state of lock `name` now, as any waiter sees it (see [`Lock::inspect`]).
    pub fn state(&self, name: &str) -> Result<LockState, Error> {
        Lock::new(self.fs(), StdEnv::new(), name, Options::default())?.inspect()
    }

    fn fs(&self) -> StdFs {
        StdFs::new(&self.path)
    }
}

/// The environment of guards: inotify wake-ups on Linux, plain sleeps elsewhere.
#[cfg(target_os = "linux")]
type GuardEnv = NotifyEnv;
#[cfg(not(target_os = "linux"))]
type GuardEnv = StdEnv;

#[cfg(target_os = "linux")]
fn guard_env(root: &Path) -> GuardEnv {
    NotifyEnv::new(root)
}

#[cfg(not(target_os = "linux"))]
fn guard_env(_root: &Path) -> GuardEnv {
    StdEnv::new()
}

/// `<program> (pid <pid>)`, the label `lockbydir exec` uses too.
fn default_holder() -> String {
    let program = std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map_or_else(|| "rust".into(), |p| p.to_string_lossy().into_owned());
    format!("{program} (pid {})", std::process::id())
}

/// Whole milliseconds of `d`, saturating (a duration too long for the protocol is refused
/// by its option check, not wrapped).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How to take one named lock: its lease, holder label and clock-skew margin, then one of
/// [`lock`](LockBuilder::lock), [`try_lock`](LockBuilder::try_lock) or
/// [`try_lock_for`](LockBuilder::try_lock_for).
#[derive(Clone, Debug)]
#[must_use = "a lock builder does nothing until lock(), try_lock() or try_lock_for()"]
pub struct LockBuilder {
    path: PathBuf,
    name: String,
    options: Options,
}

impl LockBuilder {
    /// How long the lock stays valid without a [`Guard::refresh`] (the protocol's timeout,
    /// stored in the lockdir so that every waiter obeys it; 30 s by default, 1 ms at least).
    /// A holder that dies is taken over this long after its last refresh.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.timeout_ms = ms(lease);
        self
    }

    /// The label others see as the holder (`lockbydir status`, [`Attempt::Busy`]); by
    /// default `<program> (pid <pid>)`.
    pub fn holder(mut self, label: impl Into<String>) -> Self {
        self.options.holder = label.into();
        self
    }

    /// How far the clocks of all users of the lock directory may disagree (0 by default):
    /// an expired lock is taken over only this long after its deadline.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.options.max_clock_skew_ms = ms(skew);
        self
    }

    /// Who gets the lock when it is let go while others wait (see [`Fairness`]; the
    /// protocol's default, [`Fairness::default`], unless set).
    pub fn fairness(mut self, fairness: Fairness) -> Self {
        self.options.fairness = fairness;
        self
    }

    /// Wait in the lock's fair queue as long as it takes, then hold the lock.
    pub fn lock(self) -> Result<Guard, Error> {
        loop {
            // Patience without end does not run out; should it ever, wait again.
            if let Attempt::Acquired(guard) = self.clone().attempt(u64::MAX, Lock::acquire)? {
                return Ok(guard);
            }
        }
    }

    /// One attempt that never waits. A free lock that others queued for is [`Attempt::Busy`]
    /// (with no holder): it is theirs first.
    pub fn try_lock(self) -> Result<Attempt, Error> {
        self.attempt(0, Lock::try_acquire)
    }

    /// Wait in the lock's fair queue for at most `wait`, then give up with
    /// [`Attempt::Busy`] (and leave the queue).
    pub fn try_lock_for(self, wait: Duration) -> Result<Attempt, Error> {
        self.attempt(ms(wait), Lock::acquire)
    }

    fn attempt(
        mut self,
        patience_ms: u64,
        take: fn(&mut Lock<StdFs, GuardEnv>) -> Result<Outcome, Error>,
    ) -> Result<Attempt, Error> {
        self.options.patience_ms = patience_ms;
        let mut lock = Lock::new(
            StdFs::new(&self.path),
            guard_env(&self.path),
            &self.name,
            self.options,
        )?;
        Ok(match take(&mut lock)? {
            Outcome::Acquired(grant) => Attempt::Acquired(Guard {
                lock: Box::new(lock),
                grant,
            }),
            Outcome::Busy(holder) => Attempt::Busy(holder),
        })
    }
}

/// How an attempt to take a lock ended: contention is a value, not an error.
#[derive(Debug)]
#[must_use = "dropping an acquired guard releases the lock at once"]
pub enum Attempt {
    /// The lock is held; it is released when the guard is dropped.
    Acquired(Guard),
    /// Someone else has it (the holder seen last), or it is free but others queued first
    /// (`None`).
    Busy(Option<Holder>),
}

impl Attempt {
    /// The guard, if the lock was taken (`Option` style, like `fd-lock`'s `try_write`).
    pub fn acquired(self) -> Option<Guard> {
        match self {
            Attempt::Acquired(guard) => Some(guard),
            Attempt::Busy(_) => None,
        }
    }
}

/// A held lock. Dropping it releases the lock (ignoring a loss; call
/// [`release`](Guard::release) to learn of one).
///
/// The lease runs out unless the guard is refreshed: a holder that works longer than its
/// lease must call [`refresh`](Guard::refresh) in time (every third of the lease is what
/// `lockbydir exec` does), or the next waiter takes the lock over after the deadline and the
/// guard's next refresh or release reports [`Error::Compromised`].
#[must_use = "dropping the guard releases the lock at once"]
pub struct Guard {
    // Boxed: a guard is moved around (in Attempt, into KeepAlive); the handle is large.
    lock: Box<Lock<StdFs, GuardEnv>>,
    grant: Grant,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("name", &self.lock.name().as_str())
            .field("grant", &self.grant)
            .field("held", &self.lock.holder().is_some())
            .finish()
    }
}

impl Guard {
    /// The lock's name.
    pub fn name(&self) -> &LockName {
        self.lock.name()
    }

    /// The fencing token of this acquisition: greater than every earlier acquisition's of
    /// this lock, by any process. Pass it to a resource that rejects stale writers.
    pub fn fence(&self) -> u64 {
        self.grant.fence
    }

    /// The current deadline (after the last refresh), by this process's clock.
    pub fn deadline(&self) -> SystemTime {
        let ms = self
            .lock
            .holder()
            .map_or(self.grant.deadline_ms, |h| h.deadline_ms);
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// The expired holder this acquisition took the lock over from, if any.
    pub fn took_over(&self) -> Option<&Holder> {
        self.grant.took_over.as_ref()
    }

    /// Whether the guard still believes it holds the lock: false after a refresh reported
    /// the loss. (Not checked against the lock directory; [`refresh`](Guard::refresh) does.)
    pub fn is_held(&self) -> bool {
        self.lock.holder().is_some()
    }

    /// The lease this guard was taken with (see [`LockBuilder::lease`]).
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lock.options().timeout_ms)
    }

    /// Hand the guard to a background thread that refreshes it every third of its lease
    /// until the [`KeepAlive`] is released or dropped.
    pub fn keep_alive(self) -> KeepAlive {
        let lease = self.lease();
        KeepAlive::start(self, lease)
    }

    /// Extend the deadline to now plus the lease; returns the new deadline. Fails with
    /// [`Error::Compromised`] (naming the new holder) if the lock was taken over; the guard
    /// then holds nothing, and its drop changes nothing.
    pub fn refresh(&mut self) -> Result<SystemTime, Error> {
        let deadline = self.lock.refresh()?;
        Ok(UNIX_EPOCH + Duration::from_millis(deadline))
    }

    /// Release the lock and say whether it was lost meanwhile: [`Error::Compromised`] if it
    /// was taken over (then nothing was changed), [`Released::Late`] if the deadline had
    /// passed but nobody took it. After a refresh reported the loss, [`Error::NotHeld`].
    pub fn release(mut self) -> Result<Released, Error> {
        self.lock.release()
    }
}
