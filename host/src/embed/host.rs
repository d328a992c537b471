//! The host functions of `lockbydir:lock/lock@0.2.0`: every call checked against the plugin's
//! policy, then forwarded to its backend; what it holds is tracked so that it can be released
//! when the plugin ends.

use std::sync::atomic::Ordering;

use wasmtime::component::Resource;

use crate::backend::Backend;
use crate::bindings::LockError;
use crate::bindings::plugin::lockbydir::lock::lock as imp;
use crate::bindings::types;
use crate::error::Error;
use crate::handle::{LockId, PluginLock};
use crate::report::Event;
use crate::types::{AcquireOutcome, LockState, LockStatus, Options, QueueStatus, ReleaseReport};

use super::LockbydirView;
use super::async_linker::{Pool, forward, lock_resource};
use super::ctx::{PluginLocks, State, Tracked};

/// The error value of a handle this import does not know: a host bug, so a trap.
fn unknown(rep: u32) -> LockError {
    LockError::Trap(wasmtime::Error::msg(format!(
        "lock handle {rep} is not open in this plugin's lock context"
    )))
}

impl PluginLocks<'_> {
    fn tracked(&self, lock: &Resource<PluginLock>) -> Result<&Tracked, LockError> {
        self.0
            .open
            .get(&lock.rep())
            .ok_or_else(|| unknown(lock.rep()))
    }

    /// The flag that marks `lock` as waiting (see [`Tracked::waiting`]).
    pub(super) fn waiting_flag(
        &self,
        lock: &Resource<PluginLock>,
    ) -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, LockError> {
        Ok(std::sync::Arc::clone(&self.tracked(lock)?.waiting))
    }

    /// Give `lock`'s backend handle the wait a wait starting now may have (the plugin's
    /// deadline comes closer while the handle stays open): a handle that does not hold its
    /// lock is replaced by a fresh one with that wait. Returns the handle to wait on.
    fn with_wait_now(&mut self, lock: &Resource<PluginLock>) -> Result<LockId, LockError> {
        let rep = lock.rep();
        let t = self.tracked(lock)?;
        let wait_ms = self.0.wait_now(t.options.wait_ms);
        let (id, name) = (t.lock, t.name.clone());
        if wait_ms == t.wait_ms {
            return Ok(id);
        }
        let options = Options {
            wait_ms,
            ..t.options.clone()
        };
        // The name and options were accepted when the handle was opened.
        let Ok(fresh) = self.0.backend.open(&name, &options) else {
            return Ok(id);
        };
        self.0.backend.close(id)?;
        let t = self.0.open.get_mut(&rep).ok_or_else(|| unknown(rep))?;
        t.lock = fresh;
        t.wait_ms = wait_ms;
        self.0
            .table
            .get_mut(lock)
            .map_err(|e| LockError::Trap(e.into()))?
            .id = fresh;
        Ok(fresh)
    }

    /// Acquire (waiting or not) under the policy, tracking the outcome.
    fn acquire_with(
        &mut self,
        lock: Resource<PluginLock>,
        wait: bool,
    ) -> Result<AcquireOutcome, LockError> {
        match self.begin_acquire(&lock, wait)? {
            Begun::Done(begun, outcome) => self.finish_acquire(&lock, begun, outcome),
            Begun::Wait(begun, id) => {
                let outcome = self.0.backend.acquire(id);
                self.finish_acquire(&lock, begun, outcome)
            }
        }
    }

    /// The checks and the first try of an acquisition: its outcome if that ends it (`wait`
    /// false, or the lock was free), or the backend handle to wait on.
    pub(super) fn begin_acquire(
        &mut self,
        lock: &Resource<PluginLock>,
        wait: bool,
    ) -> Result<Begun, LockError> {
        let t = self.tracked(lock)?;
        let (id, name, known) = (t.lock, t.name.clone(), t.exists);
        if t.fence.is_some() {
            return Err(LockError::Value(types::Error::AlreadyHeld));
        }
        let waiting = t.waiting.load(Ordering::SeqCst);
        let state = &mut *self.0;
        if waiting {
            let rule = "one wait per lock handle at a time: this handle already waits".into();
            return Err(state.deny(rule).into());
        }
        if let Err(rule) = state.policy.check_acquire(state.held_count()) {
            return Err(state.deny(rule).into());
        }
        // An acquisition of a lock that does not exist creates it, for good: count those
        // against the plugin's cap. (Another process may create it at the same moment; it
        // then counts against this plugin too, which errs on the safe side, as does a backend
        // that cannot tell.)
        let counted = state.policy.max_new_locks.is_some();
        let existed = !counted || known || state.backend.lock_exists(&name).unwrap_or(false);
        if !existed && let Err(rule) = state.policy.check_create(&name, state.created) {
            return Err(state.deny(rule).into());
        }
        let begun = Acquiring {
            name,
            existed,
            counted,
        };
        // Try once first, so that a plugin that has to wait is told once, up front.
        let outcome = state.backend.try_acquire(id);
        if wait && let Ok(AcquireOutcome::Busy(holder)) = &outcome {
            state.report(Event::Waiting {
                plugin: state.plugin(),
                lock: &begun.name,
                holder: holder.as_ref(),
            });
            let id = self.with_wait_now(lock)?;
            return Ok(Begun::Wait(begun, id));
        }
        Ok(Begun::Done(begun, outcome))
    }

    /// Track an acquisition's outcome: the fence held, the locks created. A grant that would
    /// take the plugin over its cap of locks held (several waits that were granted at once)
    /// is given back and refused.
    pub(super) fn finish_acquire(
        &mut self,
        lock: &Resource<PluginLock>,
        begun: Acquiring,
        outcome: Result<AcquireOutcome, Error>,
    ) -> Result<AcquireOutcome, LockError> {
        let rep = lock.rep();
        let state = &mut *self.0;
        if let Ok(AcquireOutcome::Acquired(_)) = &outcome
            && let Err(rule) = state.policy.check_acquire(state.held_count())
            && let Some(t) = state.open.get(&rep)
        {
            let id = t.lock;
            state.backend.release(id)?;
            return Err(state.deny(rule).into());
        }
        let fence = match &outcome {
            Ok(AcquireOutcome::Acquired(grant)) => Some(grant.fence),
            _ => None,
        };
        track(state, rep, &outcome, Some(fence));
        let Acquiring {
            name,
            existed,
            counted,
        } = begun;
        let exists_now = existed || state.backend.lock_exists(&name).unwrap_or(false);
        if !existed && exists_now {
            state.created += 1;
        }
        if counted
            && exists_now
            && let Some(t) = state.open.get_mut(&rep)
        {
            t.exists = true;
        }
        Ok(outcome?)
    }
}

/// What [`PluginLocks::begin_acquire`] found out, for [`PluginLocks::finish_acquire`].
pub(super) struct Acquiring {
    name: String,
    /// The lock existed before (or creations are not counted).
    existed: bool,
    /// Creations count against a cap.
    counted: bool,
}

/// How an acquisition goes on after its first try.
pub(super) enum Begun {
    /// It is over: the outcome of the try.
    Done(Acquiring, Result<AcquireOutcome, Error>),
    /// Wait on this backend handle.
    Wait(Acquiring, LockId),
}

/// Note what an acquisition, refresh or release says about holding: `on_ok` is the fence held
/// after success (`Some(None)`: none; `None`: unchanged).
fn track<T>(state: &mut State, rep: u32, result: &Result<T, Error>, on_ok: Option<Option<u64>>) {
    let Some(t) = state.open.get_mut(&rep) else {
        return;
    };
    match result.as_ref().map_err(Error::lock_error) {
        Ok(_) => {
            if let Some(fence) = on_ok {
                t.fence = fence;
            }
        }
        Err(Some(types::Error::Compromised(_) | types::Error::NotHeld)) => t.fence = None,
        Err(_) => {}
    }
}

impl types::Host for PluginLocks<'_> {
    fn convert_error(&mut self, err: LockError) -> wasmtime::Result<types::Error> {
        match err {
            LockError::Value(value) => Ok(value),
            LockError::Trap(trap) => Err(trap),
        }
    }
}

impl imp::Host for PluginLocks<'_> {
    /// Every lock the plugin may use. Under a name policy the backend never lists every lock
    /// for the plugin: the host picks the names it may see and inspects only those, so
    /// neither the state nor an error about another lock reaches the plugin.
    fn list_locks(&mut self) -> Result<Vec<LockStatus>, LockError> {
        let state = &mut *self.0;
        if !state.policy.limits_names() {
            return Ok(state.backend.list_locks()?);
        }
        let mut names = state.backend.lock_names()?;
        names.retain(|name| state.policy.allows_name(name));
        let look = Options {
            wait_ms: Some(0),
            ..Options::default()
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let id = state.backend.open(&name, &look)?;
            let inspected = state.backend.inspect(id);
            state.backend.close(id)?;
            // As the lock component lists: one broken lock is reported as broken, and does not
            // hide the others.
            match inspected.map_err(LockError::from) {
                Ok(LockState::Absent) => {} // removed since the listing
                Ok(found) => out.push(LockStatus {
                    name,
                    state: Ok(found),
                }),
                Err(LockError::Value(error)) => out.push(LockStatus {
                    name,
                    state: Err(error),
                }),
                Err(trap) => return Err(trap),
            }
        }
        Ok(out)
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.0.backend.now_ms().map_err(Error::into_trap)
    }

    /// The queue of a lock the plugin may use; under a name policy, another lock's queue is
    /// refused as opening it would be.
    fn queue(&mut self, name: String) -> Result<QueueStatus, LockError> {
        if let Err(rule) = self.0.policy.check_name(&name) {
            return Err(self.0.deny(rule).into());
        }
        Ok(self.0.backend.queue(&name)?)
    }
}

impl imp::HostLock for PluginLocks<'_> {
    fn open(&mut self, name: String, options: Options) -> Result<Resource<PluginLock>, LockError> {
        let state = &mut *self.0;
        // Keep no more of the label than the lock directory does: nobody holds the rest.
        let options = State::kept(options);
        let lease_ms = options.to_protocol().timeout_ms;
        if let Err(rule) = state.policy.check_open(&name, lease_ms, state.open.len()) {
            return Err(state.deny(rule).into());
        }
        // Waits end before the plugin's deadline: capped again when a wait starts.
        let wait_ms = state.wait_now(options.wait_ms);
        let capped = Options {
            wait_ms,
            ..options.clone()
        };
        let id = state.backend.open(&name, &capped)?;
        let handle = state
            .table
            .push(PluginLock {
                id,
                name: name.clone(),
            })
            .map_err(|e| LockError::Trap(e.into()))?;
        let tracked = Tracked {
            lock: id,
            name,
            exists: false,
            fence: None,
            options,
            wait_ms,
            waiting: Default::default(),
        };
        state.open.insert(handle.rep(), tracked);
        Ok(handle)
    }

    fn name(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<String> {
        Ok(self.0.table.get(&lock)?.name.clone())
    }

    fn acquire(&mut self, lock: Resource<PluginLock>) -> Result<AcquireOutcome, LockError> {
        self.acquire_with(lock, true)
    }

    fn try_acquire(&mut self, lock: Resource<PluginLock>) -> Result<AcquireOutcome, LockError> {
        self.acquire_with(lock, false)
    }

    fn refresh(&mut self, lock: Resource<PluginLock>) -> Result<u64, LockError> {
        let id = self.tracked(&lock)?.lock;
        let refreshed = self.0.backend.refresh(id);
        track(self.0, lock.rep(), &refreshed, None);
        Ok(refreshed?)
    }

    fn release(&mut self, lock: Resource<PluginLock>) -> Result<ReleaseReport, LockError> {
        let id = self.tracked(&lock)?.lock;
        let released = self.0.backend.release(id);
        track(self.0, lock.rep(), &released, Some(None));
        Ok(released?)
    }

    fn inspect(&mut self, lock: Resource<PluginLock>) -> Result<LockState, LockError> {
        let id = self.tracked(&lock)?.lock;
        Ok(self.0.backend.inspect(id)?)
    }

    fn fence(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<Option<u64>> {
        let id = self.0.table.get(&lock)?.id;
        self.0.backend.fence(id).map_err(Error::into_trap)
    }

    fn drop(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<()> {
        self.0.open.remove(&lock.rep());
        let entry = self.0.table.delete(lock)?;
        // Closing releases the lock if this handle still holds it, and wakes this process's
        // waiters.
        self.0.backend.close(entry.id).map_err(Error::into_trap)
    }
}

/// `lockbydir:lock/lock@0.2.0` for Stores driven with `call_async`: each function above on a
/// blocking thread.
pub(super) fn add_async<T: LockbydirView + Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    let mut inst = linker.instance("lockbydir:lock/lock@0.2.0")?;
    lock_resource(&mut inst, |v, r| imp::HostLock::drop(v, r))?;
    forward(&mut inst, "[static]lock.open", Pool::Calls, |v, (n, o)| {
        imp::HostLock::open(v, n, o)
    })?;
    forward(&mut inst, "[method]lock.name", Pool::Calls, |v, (r,)| {
        imp::HostLock::name(v, r)
    })?;
    forward(&mut inst, "[method]lock.acquire", Pool::Waits, |v, (r,)| {
        imp::HostLock::acquire(v, r)
    })?;
    forward(
        &mut inst,
        "[method]lock.try-acquire",
        Pool::Calls,
        |v, (r,)| imp::HostLock::try_acquire(v, r),
    )?;
    forward(&mut inst, "[method]lock.refresh", Pool::Calls, |v, (r,)| {
        imp::HostLock::refresh(v, r)
    })?;
    forward(&mut inst, "[method]lock.release", Pool::Calls, |v, (r,)| {
        imp::HostLock::release(v, r)
    })?;
    forward(&mut inst, "[method]lock.inspect", Pool::Calls, |v, (r,)| {
        imp::HostLock::inspect(v, r)
    })?;
    forward(&mut inst, "[method]lock.fence", Pool::Calls, |v, (r,)| {
        imp::HostLock::fence(v, r)
    })?;
    forward(&mut inst, "list-locks", Pool::Calls, |v, ()| {
        imp::Host::list_locks(v)
    })?;
    forward(&mut inst, "now-ms", Pool::Calls, |v, ()| {
        imp::Host::now_ms(v)
    })?;
    forward(&mut inst, "queue", Pool::Calls, |v, (n,)| {
        imp::Host::queue(v, n)
    })?;

    Ok(())
}
