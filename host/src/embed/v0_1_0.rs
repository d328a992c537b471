//! `lockbydir:lock/lock@0.1.0`, served to plugins built against it by the host functions of
//! the current version: each call's values are converted to 0.2.0, handled by
//! [`super::host`], and the answer converted back. The two versions share the `lock`
//! resource, so a plugin's handles are the same whichever version it calls.
//!
//! What 0.1.0 cannot say: an `unavailable` error (a cluster that did not answer) reaches an
//! 0.1.0 plugin as `io`, with the message; a handle's fairness is the default.

use wasmtime::component::Resource;

use crate::bindings::LockError;
use crate::bindings::plugin::lockbydir::lock::lock as now;
use crate::bindings::v0_1_0::lockbydir::lock::lock as old;
use crate::handle::PluginLock;
use crate::types;

use super::LockbydirView;
use super::async_linker::{Pool, forward, lock_resource};
use super::ctx::PluginLocks;

/// A 0.2.0 answer as 0.1.0 returns it: the value converted, an error value converted, a trap
/// kept.
fn answer<T, U: From<T>>(result: Result<T, LockError>) -> wasmtime::Result<Result<U, old::Error>> {
    match result {
        Ok(value) => Ok(Ok(value.into())),
        Err(LockError::Value(error)) => Ok(Err(error.into())),
        Err(LockError::Trap(trap)) => Err(trap),
    }
}

impl old::Host for PluginLocks<'_> {
    fn list_locks(&mut self) -> wasmtime::Result<Result<Vec<old::LockStatus>, old::Error>> {
        let listed = now::Host::list_locks(self);
        answer(listed.map(|locks| locks.into_iter().map(Into::into).collect::<Vec<_>>()))
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        now::Host::now_ms(self)
    }

    fn queue(&mut self, name: String) -> wasmtime::Result<Result<old::QueueStatus, old::Error>> {
        answer(now::Host::queue(self, name))
    }
}

impl old::HostLock for PluginLocks<'_> {
    fn open(
        &mut self,
        name: String,
        options: old::Options,
    ) -> wasmtime::Result<Result<Resource<PluginLock>, old::Error>> {
        answer(now::HostLock::open(self, name, options.into()))
    }

    fn name(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<String> {
        now::HostLock::name(self, lock)
    }

    fn acquire(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<old::AcquireOutcome, old::Error>> {
        answer(now::HostLock::acquire(self, lock))
    }

    fn try_acquire(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<old::AcquireOutcome, old::Error>> {
        answer(now::HostLock::try_acquire(self, lock))
    }

    fn refresh(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<Result<u64, old::Error>> {
        answer(now::HostLock::refresh(self, lock))
    }

    fn release(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<old::ReleaseReport, old::Error>> {
        answer(now::HostLock::release(self, lock))
    }

    fn inspect(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<old::LockState, old::Error>> {
        answer(now::HostLock::inspect(self, lock))
    }

    fn fence(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<Option<u64>> {
        now::HostLock::fence(self, lock)
    }

    fn drop(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<()> {
        now::HostLock::drop(self, lock)
    }
}

impl From<old::Options> for types::Options {
    fn from(o: old::Options) -> Self {
        types::Options {
            lease_ms: Some(o.timeout_ms),
            wait_ms: Some(o.patience_ms),
            holder: Some(o.holder),
            fairness: None,
            tuning: Some(types::Tuning {
                min_poll_ms: o.min_poll_ms,
                max_poll_ms: o.max_poll_ms,
                max_clock_skew_ms: o.max_clock_skew_ms,
            }),
        }
    }
}

impl From<types::HolderInfo> for old::HolderInfo {
    fn from(h: types::HolderInfo) -> Self {
        old::HolderInfo {
            holder: h.holder,
            fence: h.fence,
            since_ms: h.since_ms,
            deadline_ms: h.deadline_ms,
            timeout_ms: h.lease_ms,
        }
    }
}

impl From<types::AcquireOutcome> for old::AcquireOutcome {
    fn from(o: types::AcquireOutcome) -> Self {
        match o {
            types::AcquireOutcome::Acquired(g) => old::AcquireOutcome::Acquired(old::Grant {
                fence: g.fence,
                deadline_ms: g.deadline_ms,
                took_over: g.took_over.map(Into::into),
            }),
            types::AcquireOutcome::Busy(h) => old::AcquireOutcome::Busy(h.map(Into::into)),
        }
    }
}

impl From<types::LockState> for old::LockState {
    fn from(s: types::LockState) -> Self {
        match s {
            types::LockState::Absent => old::LockState::Absent,
            types::LockState::Free(fence) => old::LockState::Free(fence),
            types::LockState::Held(h) => old::LockState::Held(h.into()),
            types::LockState::Expired(h) => old::LockState::Expired(h.into()),
        }
    }
}

impl From<types::LockStatus> for old::LockStatus {
    fn from(s: types::LockStatus) -> Self {
        old::LockStatus {
            name: s.name,
            state: s.state.map(Into::into).map_err(Into::into),
        }
    }
}

impl From<types::QueueStatus> for old::QueueStatus {
    fn from(q: types::QueueStatus) -> Self {
        old::QueueStatus {
            live: q.live,
            oldest_arrival_ms: q.oldest_arrival_ms,
            expired: q.expired,
            foreign: q.foreign,
        }
    }
}

impl From<types::ReleaseReport> for old::ReleaseReport {
    fn from(r: types::ReleaseReport) -> Self {
        match r {
            types::ReleaseReport::InTime => old::ReleaseReport::InTime,
            types::ReleaseReport::Late => old::ReleaseReport::Late,
        }
    }
}

impl From<types::Error> for old::Error {
    fn from(e: types::Error) -> Self {
        match e {
            types::Error::InvalidName(why) => old::Error::InvalidName(why),
            types::Error::InvalidOption(why) => old::Error::InvalidOption(why),
            types::Error::Io(io) => old::Error::Io(old::IoError {
                operation: io.operation,
                path: io.path,
                message: io.message,
            }),
            types::Error::NotHeld => old::Error::NotHeld,
            types::Error::Compromised(c) => old::Error::Compromised(old::Compromise {
                fence: c.fence,
                now_held_by: c.now_held_by.map(Into::into),
            }),
            types::Error::AlreadyHeld => old::Error::AlreadyHeld,
            types::Error::Denied(why) => old::Error::Denied(why),
            types::Error::Corrupt(why) => old::Error::Corrupt(why),
            types::Error::FencesExhausted(path) => old::Error::FencesExhausted(path),
            types::Error::Unavailable(why) => old::Error::Io(old::IoError {
                operation: "request".into(),
                path: String::new(),
                message: why,
            }),
        }
    }
}

/// `lockbydir:lock/lock@0.1.0` for Stores driven with `call_async`: each function above on a
/// blocking thread.
pub(super) fn add_async<T: LockbydirView + Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    let mut inst = linker.instance("lockbydir:lock/lock@0.1.0")?;
    lock_resource(&mut inst, |v, r| old::HostLock::drop(v, r))?;
    forward(&mut inst, "[static]lock.open", Pool::Calls, |v, (n, o)| {
        old::HostLock::open(v, n, o)
    })?;
    forward(&mut inst, "[method]lock.name", Pool::Calls, |v, (r,)| {
        old::HostLock::name(v, r)
    })?;
    forward(&mut inst, "[method]lock.acquire", Pool::Waits, |v, (r,)| {
        old::HostLock::acquire(v, r)
    })?;
    forward(
        &mut inst,
        "[method]lock.try-acquire",
        Pool::Calls,
        |v, (r,)| old::HostLock::try_acquire(v, r),
    )?;
    forward(&mut inst, "[method]lock.refresh", Pool::Calls, |v, (r,)| {
        old::HostLock::refresh(v, r)
    })?;
    forward(&mut inst, "[method]lock.release", Pool::Calls, |v, (r,)| {
        old::HostLock::release(v, r)
    })?;
    forward(&mut inst, "[method]lock.inspect", Pool::Calls, |v, (r,)| {
        old::HostLock::inspect(v, r)
    })?;
    forward(&mut inst, "[method]lock.fence", Pool::Calls, |v, (r,)| {
        old::HostLock::fence(v, r)
    })?;
    forward(&mut inst, "list-locks", Pool::Calls, |v, ()| {
        old::Host::list_locks(v)
    })?;
    forward(&mut inst, "now-ms", Pool::Calls, |v, ()| {
        old::Host::now_ms(v)
    })?;
    forward(&mut inst, "queue", Pool::Calls, |v, (n,)| {
        old::Host::queue(v, n)
    })?;
    Ok(())
}
