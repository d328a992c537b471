//! The plugin import for async embedders: every call runs the sync implementation on a
//! blocking thread, so that a wait for a lock never blocks the executor thread.

use wasmtime::component::Resource;

use crate::bindings::plugin::lockbydir::lock::lock as imp;
use crate::bindings::plugin_async::lockbydir::lock::lock as aimp;
use crate::plugin_locks::{PluginLock, PluginLocks};

use super::LockbydirCtx;
use super::ctx::GONE;

/// What the async host functions run on: the plugin's context, borrowed from its Store data.
pub struct AsyncLocks<'a>(pub(super) &'a mut LockbydirCtx);

impl AsyncLocks<'_> {
    /// Run `call` on the plugin's lock state on a blocking thread of the ambient tokio
    /// runtime (wasmtime-wasi's own when there is none), handing the state over and back.
    ///
    /// If the future is dropped first, the state stays with the blocking thread, which
    /// drops it when the call returns: that releases the plugin's locks, and later calls on
    /// this context trap.
    async fn blocking<R, F>(&mut self, call: F) -> wasmtime::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut PluginLocks<'_>) -> wasmtime::Result<R> + Send + 'static,
    {
        let mut state = self
            .0
            .state
            .take()
            .ok_or_else(|| wasmtime::Error::msg(GONE))?;
        let (state, result) = wasmtime_wasi::runtime::spawn_blocking(move || {
            let result = call(&mut state.view());
            (state, result)
        })
        .await;
        self.0.state = Some(state);
        result
    }
}

impl aimp::Host for AsyncLocks<'_> {
    async fn list_locks(&mut self) -> wasmtime::Result<Result<Vec<aimp::LockStatus>, aimp::Error>> {
        let r = self.blocking(|v| imp::Host::list_locks(v)).await?;
        Ok(r.map(|v| v.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.blocking(|v| imp::Host::now_ms(v)).await
    }

    async fn queue(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<aimp::QueueStatus, aimp::Error>> {
        let r = self.blocking(move |v| imp::Host::queue(v, name)).await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }
}

impl aimp::HostLock for AsyncLocks<'_> {
    async fn open(
        &mut self,
        name: String,
        options: aimp::Options,
    ) -> wasmtime::Result<Result<Resource<PluginLock>, aimp::Error>> {
        let options = imp::Options::from(options);
        let r = self
            .blocking(move |v| imp::HostLock::open(v, name, options))
            .await?;
        Ok(r.map_err(Into::into))
    }

    async fn name(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<String> {
        self.blocking(move |v| imp::HostLock::name(v, lock)).await
    }

    async fn acquire(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<aimp::AcquireOutcome, aimp::Error>> {
        let r = self
            .blocking(move |v| imp::HostLock::acquire(v, lock))
            .await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    async fn try_acquire(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<aimp::AcquireOutcome, aimp::Error>> {
        let r = self
            .blocking(move |v| imp::HostLock::try_acquire(v, lock))
            .await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    async fn refresh(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<u64, aimp::Error>> {
        let r = self
            .blocking(move |v| imp::HostLock::refresh(v, lock))
            .await?;
        Ok(r.map_err(Into::into))
    }

    async fn release(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<aimp::ReleaseReport, aimp::Error>> {
        let r = self
            .blocking(move |v| imp::HostLock::release(v, lock))
            .await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    async fn inspect(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<aimp::LockState, aimp::Error>> {
        let r = self
            .blocking(move |v| imp::HostLock::inspect(v, lock))
            .await?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    async fn fence(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<Option<u64>> {
        self.blocking(move |v| imp::HostLock::fence(v, lock)).await
    }

    async fn drop(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<()> {
        self.blocking(move |v| imp::HostLock::drop(v, lock)).await
    }
}
