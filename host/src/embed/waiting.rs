//! The host function of `lockbydir:waiting/waiting@0.1.0`: `acquire` as a task of the plugin
//! that holds no thread while it waits. The checks and the first try are those of
//! `lock.acquire` (`PluginLocks::begin_acquire`); the wait is the backend's
//! [`crate::backend::AsyncWait`], awaited outside the Store; the outcome is tracked as
//! `lock.acquire` tracks it (`PluginLocks::finish_acquire`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::{Accessor, Resource};

use crate::backend::Backend;
use crate::bindings::waiting::lockbydir::waiting::waiting as imp;
use crate::bindings::{LockError, PluginLock};
use crate::types::AcquireOutcome;

use super::host::Begun;
use super::{HasLocks, LockbydirView, PluginLocks};

impl imp::Host for PluginLocks<'_> {}

impl<T: LockbydirView + Send + 'static> imp::HostWithStore<T> for HasLocks {
    async fn acquire(
        accessor: &Accessor<T, Self>,
        lock: Resource<PluginLock>,
    ) -> Result<AcquireOutcome, LockError> {
        let begun = accessor.with(|mut access| access.get().begin_acquire(&lock, true))?;
        let (begun, id) = match begun {
            Begun::Done(begun, outcome) => {
                return accessor
                    .with(|mut access| access.get().finish_acquire(&lock, begun, outcome));
            }
            Begun::Wait(begun, id) => (begun, id),
        };
        let (wait, waiting) = accessor.with(|mut access| {
            let locks = access.get();
            let waiting = locks.waiting_flag(&lock)?;
            let wait = locks.0.backend.wait_async(id)?;
            waiting.store(true, Ordering::SeqCst);
            Ok::<_, LockError>((wait, WaitingFlag(waiting)))
        })?;
        // Dropped here, or with this future if the plugin cancels the call (the wait then
        // withdraws its ticket as it is dropped).
        let outcome = wait.await;
        drop(waiting);
        accessor.with(|mut access| access.get().finish_acquire(&lock, begun, outcome))
    }
}

/// Marks a handle as waiting while it lives.
struct WaitingFlag(Arc<AtomicBool>);

impl Drop for WaitingFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
