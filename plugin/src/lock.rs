//! A handle on one named lock: open it, then take it with a wait, without one, or one try.

use std::time::Duration;

use crate::guard::{Attempt, Guard};
use crate::raw::lockbydir::lock::{lock as wit_lock, types as wit};
use crate::{Error, LockOptions, LockState};

/// One named lock, as used by this plugin. Opening it creates nothing; taking it gives a
/// [`Guard`], and one handle holds the lock at most once at a time.
///
/// Every plugin, `lockbydir exec` command and native program that names the same lock in the
/// same lock directory takes turns with this one. Dropping a handle that still holds the lock
/// releases it; dropping one that waits gives up its place in line.
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::Lock;
///
/// let mut lock = Lock::new("counter")?;
/// for _ in 0..3 {
///     let guard = lock.lock()?;
///     // read-modify-write the shared state, passing guard.fence() along
///     drop(guard); // released here
/// }
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Debug)]
pub struct Lock {
    handle: wit_lock::Lock,
    /// For a handle that never waits (a zero wait): the pause [`Lock::lock`] makes between
    /// its tries, in milliseconds (0 for a handle that waits in the host). Small, so that a
    /// `Lock` is two words: plugins keep many of them.
    retry_pause_ms: u32,
}

impl Lock {
    /// Open a handle on lock `name` with every setting at its default (see
    /// [`LockOptions`]). Fails with [`Error::InvalidName`] for a name that cannot be a lock's,
    /// or [`Error::Denied`] if the host's policy refuses it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("jobs")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn new(name: &str) -> Result<Lock, Error> {
        Lock::with_options(name, &LockOptions::new())
    }

    /// Open a handle on lock `name` with `options`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use lockbydir_plugin::{Lock, LockOptions};
    ///
    /// let options = LockOptions::new().lease(Duration::from_secs(60)).holder("indexer");
    /// let mut lock = Lock::with_options("index", &options)?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn with_options(name: &str, options: &LockOptions) -> Result<Lock, Error> {
        Ok(Lock {
            handle: wit_lock::Lock::open(name, options.as_raw())?,
            retry_pause_ms: match options.wait_ms() {
                Some(0) => u32::try_from(options.max_poll_ms())
                    .unwrap_or(u32::MAX)
                    .max(1),
                _ => 0,
            },
        })
    }

    /// The lock's name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// assert_eq!(lockbydir_plugin::Lock::new("jobs")?.name(), "jobs");
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn name(&self) -> String {
        self.handle.name()
    }

    /// Wait as long as it takes, then hold the lock. With a
    /// [`wait`](LockOptions::wait) set, it waits in slices of that length, keeping its place in
    /// line; on a handle opened with a zero wait it tries again after each longest polling
    /// pause (50 ms by default).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("jobs")?;
    /// let guard = lock.lock()?;
    /// println!("fence {}", guard.fence());
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn lock(&mut self) -> Result<Guard<'_>, Error> {
        loop {
            match self.handle.acquire()? {
                wit::AcquireOutcome::Acquired(grant) => {
                    return Ok(Guard::new(&self.handle, grant));
                }
                wit::AcquireOutcome::Busy(_) => {
                    let pause = Duration::from_millis(self.retry_pause_ms.into());
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
            }
        }
    }

    /// Wait for the lock in its queue for at most the handle's [`wait`](LockOptions::wait)
    /// (no limit by default), then hold it, or give up with [`Attempt::Busy`]. Calling it
    /// again soon (within 2 s) goes on waiting in the same place.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use lockbydir_plugin::{Attempt, LockOptions};
    ///
    /// let mut lock = LockOptions::new().wait(Duration::from_secs(1)).open("jobs")?;
    /// match lock.acquire()? {
    ///     Attempt::Acquired(guard) => println!("fence {}", guard.fence()),
    ///     Attempt::Busy(_) => println!("still busy after a second"),
    /// }
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn acquire(&mut self) -> Result<Attempt<'_>, Error> {
        let outcome = self.handle.acquire()?;
        Ok(Attempt::new(&self.handle, outcome))
    }

    /// One attempt that never waits: [`Attempt::Busy`] if someone else holds the lock (or,
    /// with [`Fairness::Fifo`](crate::Fairness::Fifo), others wait for it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::Lock::new("jobs")?;
    /// if let Some(guard) = lock.try_acquire()?.acquired() {
    ///     println!("got it at once, fence {}", guard.fence());
    /// }
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn try_acquire(&mut self) -> Result<Attempt<'_>, Error> {
        let outcome = self.handle.try_acquire()?;
        Ok(Attempt::new(&self.handle, outcome))
    }

    /// The lock's state now, without changing it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use lockbydir_plugin::{Lock, LockState};
    ///
    /// let free = matches!(Lock::new("jobs")?.inspect()?, LockState::Free { .. } | LockState::Absent);
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn inspect(&self) -> Result<LockState, Error> {
        Ok(self.handle.inspect()?.into())
    }
}

/// Opening from the options, builder style; here so that options know nothing of handles.
impl LockOptions {
    /// Open a handle on lock `name` with these settings (see [`Lock::with_options`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let mut lock = lockbydir_plugin::LockOptions::new().holder("me").open("jobs")?;
    /// let guard = lock.lock()?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn open(&self, name: &str) -> Result<Lock, Error> {
        Lock::with_options(name, self)
    }
}
