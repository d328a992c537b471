//! A held lock (released when dropped), and how an attempt to take one ended.

use std::time::SystemTime;

use crate::convert::instant;
use crate::raw::lockbydir::lock::{lock as wit_lock, types as wit};
use crate::{Error, Holder};

/// How an attempt to take a lock ended: contention is a value, not an error.
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::{Attempt, Lock};
///
/// let mut lock = Lock::new("jobs")?;
/// match lock.try_acquire()? {
///     Attempt::Acquired(guard) => println!("fence {}", guard.fence()),
///     Attempt::Busy(Some(holder)) => println!("{:?} has it", holder.label),
///     Attempt::Busy(None) => println!("free, but others queued first"),
/// }
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping an acquired guard releases the lock at once"]
pub enum Attempt<'a> {
    /// The lock is held; it is released when the guard is dropped.
    Acquired(Guard<'a>),
    /// The wait ran out (or the one try found the lock taken). The holder seen last, if one
    /// was seen.
    Busy(Option<Holder>),
}

impl<'a> Attempt<'a> {
    pub(crate) fn new(handle: &'a wit_lock::Lock, outcome: wit::AcquireOutcome) -> Self {
        match outcome {
            wit::AcquireOutcome::Acquired(grant) => Attempt::Acquired(Guard::new(handle, grant)),
            wit::AcquireOutcome::Busy(holder) => Attempt::Busy(holder.map(Holder::from)),
        }
    }

    /// The guard, if the lock was taken.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("jobs")?;
    /// let Some(guard) = lock.try_acquire()?.acquired() else {
    ///     return Ok(()); // someone else is at it
    /// };
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn acquired(self) -> Option<Guard<'a>> {
        match self {
            Attempt::Acquired(guard) => Some(guard),
            Attempt::Busy(_) => None,
        }
    }
}

/// A held lock. Dropping it releases the lock (ignoring a loss: call
/// [`release`](Guard::release) to learn of one).
///
/// The lease runs out unless the guard is refreshed: work longer than the lease must call
/// [`refresh`](Guard::refresh) in time, or the next waiter takes the lock over after the
/// deadline and the next refresh or release reports [`Error::Compromised`].
///
/// # Examples
///
/// ```no_run
/// let mut lock = lockbydir_plugin::Lock::new("ledger")?;
/// let mut guard = lock.lock()?;
/// let fence = guard.fence(); // hand it to whatever rejects stale writers
/// guard.refresh()?; // before the deadline, for long work
/// guard.release()?;
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock at once"]
pub struct Guard<'a> {
    handle: &'a wit_lock::Lock,
    fence: u64,
    deadline_ms: u64,
    took_over: Option<Holder>,
    /// Set once the lock is released (or known lost), so drop does nothing more.
    done: bool,
}

/// How a release went: whether the deadline had passed.
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::{Lock, Released};
///
/// let mut lock = Lock::new("ledger")?;
/// if lock.lock()?.release()? == Released::Late {
///     eprintln!("held past the deadline: choose a longer lease or refresh");
/// }
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Released before the deadline.
    InTime,
    /// The deadline had passed, but nobody had taken the lock over, so nobody else held it
    /// meanwhile.
    Late,
}

impl<'a> Guard<'a> {
    pub(crate) fn new(handle: &'a wit_lock::Lock, grant: wit::Grant) -> Self {
        Guard {
            handle,
            fence: grant.fence,
            deadline_ms: grant.deadline_ms,
            took_over: grant.took_over.map(Holder::from),
            done: false,
        }
    }

    /// The fencing token of this acquisition: greater than every earlier holder's token for
    /// this lock. Pass it to a resource that rejects tokens lower than the highest it has seen.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("ledger")?;
    /// let guard = lock.lock()?;
    /// std::fs::write("/data/ledger.fence", guard.fence().to_string()).ok();
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// When the lock expires unless refreshed (after the last [`refresh`](Guard::refresh)),
    /// by the host's clock.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("ledger")?;
    /// let guard = lock.lock()?;
    /// let left = guard.deadline().duration_since(std::time::SystemTime::now());
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn deadline(&self) -> SystemTime {
        instant(self.deadline_ms)
    }

    /// The expired holder this acquisition took the lock over from, if any: its work after
    /// its deadline may be half done.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("ledger")?;
    /// let guard = lock.lock()?;
    /// if let Some(gone) = guard.took_over() {
    ///     eprintln!("took over from {:?} (fence {}): check its work", gone.label, gone.fence);
    /// }
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn took_over(&self) -> Option<&Holder> {
        self.took_over.as_ref()
    }

    /// Extend the deadline to now plus the lease; returns the new deadline. Fails with
    /// [`Error::Compromised`] if the lock was taken over meanwhile; the guard then holds
    /// nothing, and dropping it changes nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("ledger")?;
    /// let mut guard = lock.lock()?;
    /// for chunk in 0..10 {
    ///     // work on `chunk`, each shorter than the lease
    ///     guard.refresh()?;
    /// }
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn refresh(&mut self) -> Result<SystemTime, Error> {
        match self.handle.refresh() {
            Ok(deadline_ms) => {
                self.deadline_ms = deadline_ms;
                Ok(instant(deadline_ms))
            }
            Err(e) => {
                // Lost or never held: nothing is left for drop to release. Other failures
                // (an unreachable lock service) leave the lock possibly held.
                self.done = matches!(e, wit::Error::Compromised(_) | wit::Error::NotHeld);
                Err(e.into())
            }
        }
    }

    /// Give the lock up, and say whether the deadline had passed. Fails with
    /// [`Error::Compromised`] if the lock was taken over meanwhile (nothing is changed then).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("ledger")?;
    /// let guard = lock.lock()?;
    /// // work
    /// guard.release()?; // Err(Error::Compromised { .. }) if the work outlived the lease
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn release(mut self) -> Result<Released, Error> {
        self.done = true;
        Ok(match self.handle.release()? {
            wit::ReleaseReport::InTime => Released::InTime,
            wit::ReleaseReport::Late => Released::Late,
        })
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A loss cannot be reported from drop; `release` reports it.
            let _ = self.handle.release();
        }
    }
}
