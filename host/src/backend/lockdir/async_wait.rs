//! A lockdir wait that holds no thread: the host drives the lock component's wait one step at
//! a time (`lockbydir:lock-steps/steps`), and between steps awaits the change of the one
//! entry the step names (inotify, through [`Watcher`]) or a timer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::ResourceAny;

use super::watch::{Bell, Watcher};
use super::{LockComponent, not_an_exit};
use crate::backend::outside_async;
use crate::bindings::provider::exports::lockbydir::lock_steps::steps::Step;
use crate::error::Error;
use crate::types::AcquireOutcome;

/// One wait in progress on one handle of the lock component. Dropped before it is done, it
/// withdraws the handle's ticket.
pub(super) struct StepWait {
    pub(super) component: Arc<Mutex<LockComponent>>,
    pub(super) resource: ResourceAny,
    pub(super) name: String,
    pub(super) place: String,
    pub(super) lock_dir: PathBuf,
    pub(super) watcher: Option<&'static Watcher>,
    /// The wait ended (done, or failed): nothing to withdraw.
    pub(super) done: bool,
}

impl StepWait {
    /// Step until the wait is over, sleeping between steps as each asks.
    pub(super) async fn run(mut self) -> Result<AcquireOutcome, Error> {
        loop {
            let step = self.step();
            let (until_changed, us) = match step {
                Ok(Step::Sleep(sleep)) => (sleep.until_changed, sleep.us),
                Ok(Step::Done(outcome)) => {
                    self.done = true;
                    return Ok(outcome);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            sleep_until_changed(self.watcher, &self.lock_dir, until_changed.as_deref(), us).await;
        }
    }

    /// One step, in the lock component.
    fn step(&mut self) -> Result<Step, Error> {
        let (component, resource) = (&self.component, self.resource);
        let result = outside_async(|| {
            let mut c = LockComponent::lock(component);
            let c = &mut *c;
            c.exports
                .lockbydir_lock_steps_steps()
                .call_acquire_step(&mut c.store, resource)
        });
        result
            .map_err(|reason| Error::Trap {
                doing: format!("acquiring lock `{}`", self.name),
                reason: not_an_exit(reason),
            })?
            .map_err(|error| Error::Lock {
                lock: self.name.clone(),
                place: self.place.clone(),
                error,
            })
    }
}

impl Drop for StepWait {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (component, resource) = (&self.component, self.resource);
        // A trap here leaves the ticket to expire, as a crashed waiter's does; the handle's
        // next call reports the trap.
        let _ = outside_async(|| {
            let mut c = LockComponent::lock(component);
            let c = &mut *c;
            c.exports
                .lockbydir_lock_steps_steps()
                .call_cancel_wait(&mut c.store, resource)
        });
    }
}

/// Sleep up to `us` microseconds, or until the entry at `path` (relative to `lock_dir`) is
/// renamed or removed, if there is a watcher and a path. The watch is armed before the entry
/// is looked at, so no change falls between the two.
async fn sleep_until_changed(
    watcher: Option<&'static Watcher>,
    lock_dir: &Path,
    path: Option<&str>,
    us: u64,
) {
    let timer = tokio::time::sleep(Duration::from_micros(us));
    let (Some(watcher), Some(path)) = (watcher, path) else {
        return timer.await;
    };
    let entry = lock_dir.join(path);
    let (Some(dir), Some(name)) = (entry.parent(), entry.file_name()) else {
        return timer.await;
    };
    let bell = Arc::new(Bell::default());
    let registration = match watcher.register(dir, name, Arc::clone(&bell)) {
        Ok(registration) => registration,
        // Gone already: step again at once.
        Err(_) if std::fs::symlink_metadata(&entry).is_err() => return,
        Err(_) => return timer.await,
    };
    let rung = bell.rung();
    tokio::pin!(rung);
    rung.as_mut().enable();
    if registration.fired() || std::fs::symlink_metadata(&entry).is_err() {
        return;
    }
    tokio::select! {
        () = rung => {}
        () = timer => {}
    }
}
