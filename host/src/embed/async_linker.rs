//! The lock import for Stores driven with `call_async`: the same host functions as the sync
//! linker (every version's), each run on a blocking thread, so that a wait for a lock never
//! blocks the executor thread.

use std::future::Future;

use wasmtime::StoreContextMut;
use wasmtime::component::{
    ComponentNamedList, Lift, LinkerInstance, Lower, Resource, ResourceType,
};

use crate::bindings::plugin::lockbydir::lock::lock as now;
use crate::bindings::v0_1_0::lockbydir::lock::lock as old;
use crate::bindings::{LockError, types};
use crate::handle::PluginLock;

use super::LockbydirView;
use super::ctx::GONE;
use super::host::PluginLocks;

/// Run `call` on the plugin's lock state on a blocking thread of the ambient tokio runtime
/// (wasmtime-wasi's own when there is none), handing the state over and back.
///
/// If the future is dropped first, the state stays with the blocking thread, which drops it
/// when the call returns: that releases the plugin's locks, and later calls on this context
/// trap.
async fn blocking<T, R, F>(mut store: StoreContextMut<'_, T>, call: F) -> wasmtime::Result<R>
where
    T: LockbydirView,
    R: Send + 'static,
    F: FnOnce(&mut PluginLocks<'_>) -> R + Send + 'static,
{
    let ctx = store.data_mut().lockbydir();
    let mut state = ctx.state.take().ok_or_else(|| wasmtime::Error::msg(GONE))?;
    let (state, result) = wasmtime_wasi::runtime::spawn_blocking(move || {
        let result = call(&mut PluginLocks(&mut state));
        (state, result)
    })
    .await;
    store.data_mut().lockbydir().state = Some(state);
    Ok(result)
}

/// What a host function of the sync linker returns, as the component model takes it.
trait Answer: Send + 'static {
    type Value: Lower + Send + Sync + 'static;
    fn into_answer(self) -> wasmtime::Result<Self::Value>;
}

/// A call that can fail with the interface's error value (or trap).
impl<T: Lower + Send + Sync + 'static> Answer for Result<T, LockError> {
    type Value = Result<T, types::Error>;
    fn into_answer(self) -> wasmtime::Result<Self::Value> {
        match self {
            Ok(value) => Ok(Ok(value)),
            Err(LockError::Value(error)) => Ok(Err(error)),
            Err(LockError::Trap(trap)) => Err(trap),
        }
    }
}

/// A call that returns its value, or traps (0.1.0's calls return their error values inside).
impl<T: Lower + Send + Sync + 'static> Answer for wasmtime::Result<T> {
    type Value = T;
    fn into_answer(self) -> wasmtime::Result<T> {
        self
    }
}

/// Define `name` in `inst` as `call` on a blocking thread.
fn forward<T, P, A>(
    inst: &mut LinkerInstance<'_, T>,
    name: &str,
    call: fn(&mut PluginLocks<'_>, P) -> A,
) -> wasmtime::Result<()>
where
    T: LockbydirView + Send + 'static,
    P: ComponentNamedList + Lift + Send + 'static,
    A: Answer,
{
    inst.func_wrap_async(name, move |store: StoreContextMut<'_, T>, params: P| {
        Box::new(async move {
            let answer = blocking(store, move |v| call(v, params)).await?;
            Ok((answer.into_answer()?,))
        }) as Box<dyn Future<Output = wasmtime::Result<(A::Value,)>> + Send>
    })
}

/// Define the `lock` resource, whose destructor is `drop` on a blocking thread.
fn lock_resource<T: LockbydirView + Send + 'static>(
    inst: &mut LinkerInstance<'_, T>,
    drop: fn(&mut PluginLocks<'_>, Resource<PluginLock>) -> wasmtime::Result<()>,
) -> wasmtime::Result<()> {
    inst.resource_async(
        "lock",
        ResourceType::host::<PluginLock>(),
        move |store, rep| {
            Box::new(
                async move { blocking(store, move |v| drop(v, Resource::new_own(rep))).await? },
            )
        },
    )
}

/// `lockbydir:lock/lock@0.2.0` and `@0.1.0`, each function on a blocking thread.
pub(super) fn add<T: LockbydirView + Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    let mut inst = linker.instance("lockbydir:lock/lock@0.2.0")?;
    lock_resource(&mut inst, |v, r| now::HostLock::drop(v, r))?;
    forward(&mut inst, "[static]lock.open", |v, (n, o)| {
        now::HostLock::open(v, n, o)
    })?;
    forward(&mut inst, "[method]lock.name", |v, (r,)| {
        now::HostLock::name(v, r)
    })?;
    forward(&mut inst, "[method]lock.acquire", |v, (r,)| {
        now::HostLock::acquire(v, r)
    })?;
    forward(&mut inst, "[method]lock.try-acquire", |v, (r,)| {
        now::HostLock::try_acquire(v, r)
    })?;
    forward(&mut inst, "[method]lock.refresh", |v, (r,)| {
        now::HostLock::refresh(v, r)
    })?;
    forward(&mut inst, "[method]lock.release", |v, (r,)| {
        now::HostLock::release(v, r)
    })?;
    forward(&mut inst, "[method]lock.inspect", |v, (r,)| {
        now::HostLock::inspect(v, r)
    })?;
    forward(&mut inst, "[method]lock.fence", |v, (r,)| {
        now::HostLock::fence(v, r)
    })?;
    forward(&mut inst, "list-locks", |v, ()| now::Host::list_locks(v))?;
    forward(&mut inst, "now-ms", |v, ()| now::Host::now_ms(v))?;
    forward(&mut inst, "queue", |v, (n,)| now::Host::queue(v, n))?;

    let mut inst = linker.instance("lockbydir:lock/lock@0.1.0")?;
    lock_resource(&mut inst, |v, r| old::HostLock::drop(v, r))?;
    forward(&mut inst, "[static]lock.open", |v, (n, o)| {
        old::HostLock::open(v, n, o)
    })?;
    forward(&mut inst, "[method]lock.name", |v, (r,)| {
        old::HostLock::name(v, r)
    })?;
    forward(&mut inst, "[method]lock.acquire", |v, (r,)| {
        old::HostLock::acquire(v, r)
    })?;
    forward(&mut inst, "[method]lock.try-acquire", |v, (r,)| {
        old::HostLock::try_acquire(v, r)
    })?;
    forward(&mut inst, "[method]lock.refresh", |v, (r,)| {
        old::HostLock::refresh(v, r)
    })?;
    forward(&mut inst, "[method]lock.release", |v, (r,)| {
        old::HostLock::release(v, r)
    })?;
    forward(&mut inst, "[method]lock.inspect", |v, (r,)| {
        old::HostLock::inspect(v, r)
    })?;
    forward(&mut inst, "[method]lock.fence", |v, (r,)| {
        old::HostLock::fence(v, r)
    })?;
    forward(&mut inst, "list-locks", |v, ()| old::Host::list_locks(v))?;
    forward(&mut inst, "now-ms", |v, ()| old::Host::now_ms(v))?;
    forward(&mut inst, "queue", |v, (n,)| old::Host::queue(v, n))?;
    Ok(())
}
