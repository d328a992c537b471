//! A guard refreshed by a background thread, for work whose length is not known in advance.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::Guard;
use crate::error::Error;
use crate::lock::Released;

/// A held lock that a background thread refreshes every third of its lease (what
/// `lockbydir exec` does while its command runs), from [`Guard::keep_alive`]. Dropping it
/// stops the thread and releases the lock.
///
/// The first refresh that fails stops the thread and is kept: [`check`](KeepAlive::check)
/// returns it, and so does [`release`](KeepAlive::release) if the lock was lost
/// ([`Error::Compromised`]). A process that is paused (SIGSTOP, a suspended machine) pauses
/// its refresher too, so it can still lose the lock past its deadline: pass
/// [`fence`](KeepAlive::fence) to resources that check fences.
///
/// # Panics
///
/// [`Guard::keep_alive`] panics if the system cannot start a thread, like
/// `std::thread::spawn`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use lockbydir_protocol::guard::{Attempt, LockDir};
///
/// # let path = std::env::temp_dir().join(format!("lockbydir-doc-keep-{}", std::process::id()));
/// let locks = LockDir::create(&path)?;
/// let held = locks.lock("report").lease(Duration::from_secs(1)).lock()?.keep_alive();
/// std::thread::sleep(Duration::from_millis(2500)); // longer than the lease: refreshed meanwhile
/// held.check()?; // no refresh failed so far
/// assert!(matches!(locks.lock("report").try_lock()?, Attempt::Busy(Some(_))));
/// held.release()?;
/// # std::fs::remove_dir_all(&path).unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping it releases the lock at once"]
#[derive(Debug)]
pub struct KeepAlive {
    shared: Arc<Shared>,
    refresher: Option<JoinHandle<()>>,
    fence: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    guard: Option<Guard>,
    stop: bool,
    failed: Option<Error>,
}

impl Shared {
    /// The state, also after a panic elsewhere (none of its updates can be left half done).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl KeepAlive {
    pub(crate) fn start(guard: Guard, lease: Duration) -> KeepAlive {
        let fence = guard.fence();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                guard: Some(guard),
                stop: false,
                failed: None,
            }),
            wake: Condvar::new(),
        });
        let every = (lease / 3).max(Duration::from_millis(1));
        let theirs = Arc::clone(&shared);
        let refresher = std::thread::Builder::new()
            .name("lockbydir-keep-alive".into())
            .spawn(move || refresh_until_stopped(&theirs, every))
            .expect("cannot start the keep-alive thread");
        KeepAlive {
            shared,
            refresher: Some(refresher),
            fence,
        }
    }

    /// The fencing token of this acquisition.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The deadline after the last refresh, by this process's clock; `None` once the lock
    /// was lost.
    pub fn deadline(&self) -> Option<SystemTime> {
        let state = self.shared.lock();
        state
            .guard
            .as_ref()
            .filter(|g| g.is_held())
            .map(Guard::deadline)
    }

    /// The error of the refresh that failed, if one did (then nothing refreshes the lock any
    /// more); `Ok` while every refresh succeeded.
    pub fn check(&self) -> Result<(), Error> {
        match &self.shared.lock().failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Stop refreshing and release the lock: [`Error::Compromised`] if it was lost (found
    /// by a refresh or by this release), otherwise how the release went. A refresh that
    /// failed for another reason (the filesystem) does not mean the lock was lost: the
    /// release then tells.
    pub fn release(mut self) -> Result<Released, Error> {
        self.stop();
        let (guard, failed) = {
            let mut state = self.shared.lock();
            (state.guard.take(), state.failed.take())
        };
        match (guard.filter(Guard::is_held), failed) {
            (Some(guard), _) => guard.release(),
            (None, Some(failed)) => Err(failed),
            (None, None) => Err(Error::NotHeld),
        }
    }

    fn stop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(refresher) = self.refresher.take() {
            // A refresher that panicked left the state whole (see Shared::lock).
            let _ = refresher.join();
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop();
        // Dropping the guard releases the lock.
        drop(self.shared.lock().guard.take());
    }
}

fn refresh_until_stopped(shared: &Shared, every: Duration) {
    let mut state = shared.lock();
    loop {
        let (next, timeout) = shared
            .wake
            .wait_timeout_while(state, every, |s| !s.stop)
            .unwrap_or_else(PoisonError::into_inner);
        state = next;
        if state.stop || !timeout.timed_out() {
            return;
        }
        let Some(guard) = state.guard.as_mut() else {
            return;
        };
        if let Err(e) = guard.refresh() {
            state.failed = Some(e);
            return;
        }
    }
}
