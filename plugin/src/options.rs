//! How a lock handle is opened: lease, wait, holder label, and (only when asked) fairness,
//! polling and clock skew.

use std::time::Duration;

use crate::convert::ms;
use crate::raw::lockbydir::lock::types as wit;

/// The settings of a lock handle, each with a default the host fills in: a lease of 30 s,
/// no limit on waiting, no holder label, bounded fairness, and polling and clock skew that
/// suit one machine.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use lockbydir_plugin::{Attempt, LockOptions};
///
/// let mut lock = LockOptions::new()
///     .lease(Duration::from_secs(10))
///     .wait(Duration::from_secs(2))
///     .holder("report-writer")
///     .open("reports")?;
/// match lock.acquire()? {
///     Attempt::Acquired(guard) => println!("fence {}", guard.fence()),
///     Attempt::Busy(holder) => println!("busy, held by {:?}", holder.map(|h| h.label)),
/// }
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "options do nothing until open()"]
pub struct LockOptions {
    // Kept in the interface's own shape, so opening a handle allocates nothing.
    raw: wit::Options,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions::new()
    }
}

/// Who gets a released lock while others wait for it. Either way waiters are served among
/// themselves first come, first served, and only one holder ever holds the lock.
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::{Fairness, LockOptions};
///
/// let lock = LockOptions::new().fairness(Fairness::Fifo).open("queue-head")?;
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fairness {
    /// Strictly first come, first served: once anyone waits, each release goes to the
    /// longest waiter, and a holder that asks again queues behind them.
    Fifo,
    /// The default: a holder that lets go and asks again at once may take the lock straight
    /// back within about a millisecond; its next release then goes to the first waiter.
    #[default]
    Bounded,
}

/// The interface's defaults for the tuning fields left unset when another is set.
const DEFAULT_MIN_POLL_MS: u64 = 1;
const DEFAULT_MAX_POLL_MS: u64 = 50;

impl LockOptions {
    /// Every setting at its default.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let lock = lockbydir_plugin::LockOptions::new().open("jobs")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn new() -> Self {
        LockOptions {
            raw: wit::Options {
                lease_ms: None,
                wait_ms: None,
                holder: None,
                fairness: None,
                tuning: None,
            },
        }
    }

    /// How long a held lock stays valid without [`Guard::refresh`](crate::Guard::refresh)
    /// (default 30 s; whole milliseconds, at least 1 ms). It is stored with the lock, so every
    /// waiter obeys it: a holder that dies is taken over this long after its last refresh.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let lock = lockbydir_plugin::LockOptions::new().lease(Duration::from_secs(5)).open("jobs")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.raw.lease_ms = Some(ms(lease));
        self
    }

    /// How long [`Lock::acquire`](crate::Lock::acquire) waits before it gives up with
    /// [`Attempt::Busy`](crate::Attempt::Busy) (default: no limit; [`Duration::ZERO`]: one
    /// attempt).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let lock = lockbydir_plugin::LockOptions::new().wait(Duration::from_millis(500)).open("jobs")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn wait(mut self, wait: Duration) -> Self {
        self.raw.wait_ms = Some(ms(wait));
        self
    }

    /// A label that tells others who holds the lock (`lockbydir status` shows it, and
    /// [`Attempt::Busy`](crate::Attempt::Busy) carries it); default: none.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let lock = lockbydir_plugin::LockOptions::new().holder("nightly backup").open("db")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn holder(mut self, label: impl Into<String>) -> Self {
        self.raw.holder = Some(label.into());
        self
    }

    /// Who gets the lock next while others wait (default [`Fairness::Bounded`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use lockbydir_plugin::{Fairness, LockOptions};
    /// let lock = LockOptions::new().fairness(Fairness::Fifo).open("jobs")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn fairness(mut self, fairness: Fairness) -> Self {
        self.raw.fairness = Some(match fairness {
            Fairness::Fifo => wit::Fairness::Fifo,
            Fairness::Bounded => wit::Fairness::Bounded,
        });
        self
    }

    /// The shortest and longest pause between two looks at a busy lock (default 1 ms and
    /// 50 ms). Only for callers that measured a reason to change them.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let lock = lockbydir_plugin::LockOptions::new()
    ///     .polling(Duration::from_millis(5), Duration::from_millis(200))
    ///     .open("slow-disk")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn polling(mut self, min: Duration, max: Duration) -> Self {
        let tuning = self.tuning();
        tuning.min_poll_ms = ms(min);
        tuning.max_poll_ms = ms(max);
        self
    }

    /// How far the clocks of all users of the lock may disagree (default 0, right when they
    /// all run on one machine): an expired lock is taken over only this long after its
    /// deadline.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let lock = lockbydir_plugin::LockOptions::new()
    ///     .max_clock_skew(Duration::from_secs(2))
    ///     .open("shared-over-nfs")?;
    /// # Ok::<(), lockbydir_plugin::Error>(())
    /// ```
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.tuning().max_clock_skew_ms = ms(skew);
        self
    }

    /// The settings as the interface takes them.
    pub(crate) fn as_raw(&self) -> &wit::Options {
        &self.raw
    }

    /// The wait in whole milliseconds, if one was set.
    pub(crate) fn wait_ms(&self) -> Option<u64> {
        self.raw.wait_ms
    }

    /// The longest pause between looks, as the host will use it.
    pub(crate) fn max_poll_ms(&self) -> u64 {
        self.raw
            .tuning
            .as_ref()
            .map_or(DEFAULT_MAX_POLL_MS, |t| t.max_poll_ms)
    }

    fn tuning(&mut self) -> &mut wit::Tuning {
        self.raw.tuning.get_or_insert(wit::Tuning {
            min_poll_ms: DEFAULT_MIN_POLL_MS,
            max_poll_ms: DEFAULT_MAX_POLL_MS,
            max_clock_skew_ms: 0,
        })
    }
}
