//! The plugin's `lockbydir:lock/lock` import, implemented by forwarding every call to a lock
//! component instance in a Store of its own (laid out like wasmtime's wasi-keyvalue: a Ctx,
//! a View borrowing it with the resource table, and [`add_to_linker`]).
//!
//! The plugin never sees the lock directory: only the lock component does. Each plugin gets
//! its own lock component instance, so plugins share nothing but the directory.

use wasmtime::component::{HasData, Linker, Resource, ResourceAny, ResourceTable};

use crate::bindings::plugin::lockbydir::lock::lock as imp;
use crate::bindings::wit;
use crate::lock_service::LockService;
use crate::waiting::WaitNotice;

/// What a plugin's lock import needs: its own lock service, and who it is (for messages).
pub struct PluginLocksCtx {
    service: LockService,
    plugin: String,
    quiet: bool,
}

impl PluginLocksCtx {
    /// Forward the lock import of plugin `plugin` to `service`. Unless `quiet`, a plugin that
    /// has to wait for a lock is announced once on stderr.
    pub fn new(service: LockService, plugin: impl Into<String>, quiet: bool) -> Self {
        PluginLocksCtx {
            service,
            plugin: plugin.into(),
            quiet,
        }
    }

    /// The lock service behind this plugin's locks.
    pub fn service(&mut self) -> &mut LockService {
        &mut self.service
    }
}

/// The host value behind a plugin's `lock` resource: the lock component's own handle.
pub struct PluginLock {
    resource: ResourceAny,
    name: String,
}

/// A borrow of the plugin's lock state and resource table: what the host functions run on.
pub struct PluginLocks<'a> {
    /// The plugin's lock state.
    pub ctx: &'a mut PluginLocksCtx,
    /// The plugin's resource table.
    pub table: &'a mut ResourceTable,
}

/// Store data that can lend out a [`PluginLocks`] view.
pub trait PluginLocksView {
    /// Borrow the lock state and resource table.
    fn plugin_locks(&mut self) -> PluginLocks<'_>;
}

struct HasPluginLocks;

impl HasData for HasPluginLocks {
    type Data<'a> = PluginLocks<'a>;
}

/// Provide `lockbydir:lock/lock` to plugins run with this linker.
pub fn add_to_linker<T: PluginLocksView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    imp::add_to_linker::<T, HasPluginLocks>(linker, |t| t.plugin_locks())
}

impl PluginLocks<'_> {
    fn entry(&self, lock: &Resource<PluginLock>) -> wasmtime::Result<(ResourceAny, String)> {
        let entry = self.table.get(lock)?;
        Ok((entry.resource, entry.name.clone()))
    }
}

impl imp::Host for PluginLocks<'_> {
    fn list_locks(&mut self) -> wasmtime::Result<Result<Vec<imp::LockStatus>, imp::Error>> {
        let r = self.ctx.service.list_locks_raw()?;
        Ok(r.map(|v| v.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.ctx.service.now_ms_raw()
    }
}

impl imp::HostLock for PluginLocks<'_> {
    fn open(
        &mut self,
        name: String,
        options: imp::Options,
    ) -> wasmtime::Result<Result<Resource<PluginLock>, imp::Error>> {
        let options: wit::Options = options.into();
        match self.ctx.service.open_raw(&name, &options)? {
            Ok(resource) => Ok(Ok(self.table.push(PluginLock { resource, name })?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn name(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<String> {
        Ok(self.table.get(&lock)?.name.clone())
    }

    fn acquire(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<imp::AcquireOutcome, imp::Error>> {
        let (resource, name) = self.entry(&lock)?;
        // Try once first, so that a plugin that has to wait is announced once, up front.
        let first = self.ctx.service.try_acquire_raw(resource)?;
        let outcome = match first {
            Ok(wit::AcquireOutcome::Busy(holder)) => {
                if !self.ctx.quiet {
                    let now = self.ctx.service.now_ms_raw()?;
                    let who = format!("plugin `{}`", self.ctx.plugin);
                    eprintln!("{}", WaitNotice::new(&who, &name, holder.as_ref(), now));
                }
                self.ctx.service.acquire_raw(resource)?
            }
            other => other,
        };
        Ok(outcome.map(Into::into).map_err(Into::into))
    }

    fn try_acquire(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<imp::AcquireOutcome, imp::Error>> {
        let (resource, _) = self.entry(&lock)?;
        let r = self.ctx.service.try_acquire_raw(resource)?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    fn refresh(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<Result<u64, imp::Error>> {
        let (resource, _) = self.entry(&lock)?;
        Ok(self.ctx.service.refresh_raw(resource)?.map_err(Into::into))
    }

    fn release(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<imp::ReleaseReport, imp::Error>> {
        let (resource, _) = self.entry(&lock)?;
        let r = self.ctx.service.release_raw(resource)?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    fn inspect(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<imp::LockState, imp::Error>> {
        let (resource, _) = self.entry(&lock)?;
        let r = self.ctx.service.inspect_raw(resource)?;
        Ok(r.map(Into::into).map_err(Into::into))
    }

    fn fence(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<Option<u64>> {
        let (resource, _) = self.entry(&lock)?;
        self.ctx.service.fence_raw(resource)
    }

    fn drop(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<()> {
        let entry = self.table.delete(lock)?;
        // The component's destructor releases the lock if this handle still holds it.
        self.ctx.service.drop_raw(entry.resource)
    }
}
