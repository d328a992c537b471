//! How the lock import is served to Stores driven with `call_async`: the host functions of the
//! sync linker, each run on a blocking thread, so that a wait for a lock never blocks the
//! executor thread. Waits ([`Pool::Waits`]) run on a pool of their own, so that however many
//! plugins wait, the calls that end waits (releases) and wasmtime-wasi's own blocking
//! filesystem calls never queue behind them in tokio's blocking pool. Each version's module
//! lists its functions next to their implementations (`super::host::add_async`,
//! `super::v0_1_0::add_async`) with [`forward`] and [`lock_resource`], naming the pool of each.

use std::future::Future;
use std::sync::OnceLock;

use wasmtime::StoreContextMut;
use wasmtime::component::{
    ComponentNamedList, Lift, LinkerInstance, Lower, Resource, ResourceType,
};

use crate::bindings::{LockError, types};
use crate::handle::PluginLock;

use super::LockbydirView;
use super::ctx::{GONE, PluginLocks};

/// Which threads a call runs on.
#[derive(Clone, Copy)]
pub(super) enum Pool {
    /// The blocking pool of the ambient tokio runtime (wasmtime-wasi's own when there is
    /// none), where wasmtime-wasi runs its blocking calls too: for calls that end soon.
    Calls,
    /// [`waits`]: for calls that wait for a lock.
    Waits,
}

/// The threads lock waits run on: the blocking pool of a runtime of their own, which nothing
/// else uses, with no cap of its own. A 0.2 plugin's call is synchronous, so each plugin
/// instance waits on at most one thread; idle threads are kept a while for the next waits.
fn waits() -> &'static tokio::runtime::Runtime {
    static WAITS: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    WAITS.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("lockbydir-wait")
            .max_blocking_threads(usize::MAX >> 4)
            .build()
            .expect("a tokio runtime without drivers builds")
    })
}

/// Run `call` on the plugin's lock state on a thread of `pool`, handing the state over and
/// back.
///
/// If the future is dropped first, the state stays with the thread, which drops it when the
/// call returns: that releases the plugin's locks, and later calls on this context trap.
async fn blocking<T, R, F>(
    mut store: StoreContextMut<'_, T>,
    pool: Pool,
    call: F,
) -> wasmtime::Result<R>
where
    T: LockbydirView,
    R: Send + 'static,
    F: FnOnce(&mut PluginLocks<'_>) -> R + Send + 'static,
{
    let ctx = store.data_mut().lockbydir();
    let mut state = ctx.state.take().ok_or_else(|| wasmtime::Error::msg(GONE))?;
    let work = move || {
        let result = call(&mut PluginLocks(&mut state));
        (state, result)
    };
    let (state, result) = match pool {
        Pool::Calls => wasmtime_wasi::runtime::spawn_blocking(work).await,
        Pool::Waits => waits().spawn_blocking(work).await.map_err(|e| {
            // The pool is never shut down, and a panic in a host function is a host bug.
            wasmtime::Error::msg(format!("a lock wait's thread failed: {e}"))
        })?,
    };
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

/// Define `name` in `inst` as `call` on a thread of `pool`.
pub(super) fn forward<T, P, A>(
    inst: &mut LinkerInstance<'_, T>,
    name: &str,
    pool: Pool,
    call: fn(&mut PluginLocks<'_>, P) -> A,
) -> wasmtime::Result<()>
where
    T: LockbydirView + Send + 'static,
    P: ComponentNamedList + Lift + Send + 'static,
    A: Answer,
{
    inst.func_wrap_async(name, move |store: StoreContextMut<'_, T>, params: P| {
        Box::new(async move {
            let answer = blocking(store, pool, move |v| call(v, params)).await?;
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
            Box::new(async move {
                blocking(store, Pool::Calls, move |v| drop(v, Resource::new_own(rep))).await?
            })
        },
    )
}
