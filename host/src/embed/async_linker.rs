//! How the lock import is served to Stores driven with `call_async`: the host functions of the
//! sync linker, each run on a blocking thread, so that a wait for a lock never blocks the
//! executor thread. Each version's module lists its functions next to their implementations
//! (`super::host::add_async`, `super::v0_1_0::add_async`) with [`forward`] and
//! [`lock_resource`].

use std::future::Future;

use wasmtime::StoreContextMut;
use wasmtime::component::{
    ComponentNamedList, Lift, LinkerInstance, Lower, Resource, ResourceType,
};

use crate::bindings::{LockError, types};
use crate::handle::PluginLock;

use super::LockbydirView;
use super::ctx::{GONE, PluginLocks};

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
pub(super) trait Answer: Send + 'static {
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
pub(super) fn forward<T, P, A>(
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
pub(super) fn lock_resource<T: LockbydirView + Send + 'static>(
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
