//! The plugin's `lockbydir:lock/lock` import, implemented by forwarding every call to a lock
//! component instance in a Store of its own (laid out like wasmtime's wasi-keyvalue: a Ctx,
//! a View borrowing it with the resource table, and [`add_to_linker`]).
//!
//! The plugin never sees the lock directory: only the lock component does. Each plugin gets
//! its own lock component instance, so plugins share nothing but the directory.

use std::collections::BTreeMap;
use std::time::Instant;

use lockbydir_protocol::entry::kept_label;
use lockbydir_protocol::recover::Recovered;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::backend::{LockBackend, RawLock};
use crate::bindings::plugin::lockbydir::lock::lock as imp;
use crate::bindings::wit;
use crate::display::escape;
use crate::limits::WAIT_MARGIN;
use crate::policy::LockPolicy;
use crate::waiting::WaitNotice;

/// What a plugin's lock import needs: its own lock service, its policy, and what it has open.
pub struct PluginLocksCtx {
    service: Box<dyn LockBackend>,
    plugin: String,
    quiet: bool,
    policy: LockPolicy,
    /// Lock waits may not outlast this instant (the plugin's deadline).
    wait_until: Option<Instant>,
    /// Every open handle, by resource rep, and the fence it holds its lock with.
    open: BTreeMap<u32, Tracked>,
    /// How many lockdirs this plugin's acquisitions created (see [`LockPolicy::max_new_locks`]).
    created: usize,
}

struct Tracked {
    resource: RawLock,
    name: String,
    /// Its lockdir was seen to exist: acquiring through this handle creates nothing.
    exists: bool,
    /// The fence of this handle's acquisition while it holds its lock: with the name, what
    /// it takes to release the lock without the lock component.
    fence: Option<u64>,
    /// The options the plugin opened it with (label cut to what an entry keeps).
    options: wit::Options,
    /// The patience the lock component's handle has (the plugin's, capped by its deadline).
    patience_ms: u64,
}

impl PluginLocksCtx {
    /// Forward the lock import of plugin `plugin` to `service`, under `policy`. Unless
    /// `quiet`, a plugin that has to wait for a lock is announced once on stderr. Lock waits
    /// end by `wait_until` at the latest.
    pub fn new(
        service: Box<dyn LockBackend>,
        plugin: impl Into<String>,
        quiet: bool,
        policy: LockPolicy,
        wait_until: Option<Instant>,
    ) -> Self {
        PluginLocksCtx {
            service,
            plugin: plugin.into(),
            quiet,
            policy,
            wait_until,
            open: BTreeMap::new(),
            created: 0,
        }
    }

    /// The lock service behind this plugin's locks.
    pub fn service(&mut self) -> &mut dyn LockBackend {
        &mut *self.service
    }

    /// After the plugin ended (exit, trap, limit): release every lock it still holds and close
    /// its handles, so others need not wait for the timeout (each release wakes the waiters of
    /// this process). Returns what was released.
    ///
    /// If the lock component can no longer be called (it trapped, or ran out of memory or
    /// handles), each lock is released without it, by the name and fence it was granted.
    pub fn release_all(&mut self) -> Vec<String> {
        let mut released = Vec::new();
        for (_, t) in std::mem::take(&mut self.open) {
            if let Some(fence) = t.fence {
                match self.service.release_raw(t.resource) {
                    Ok(Ok(_)) => released.push(t.name.clone()),
                    Ok(Err(_)) => {} // it had already lost the lock: nothing to give back
                    Err(_) => match self.service.release_by_fence(&t.name, fence) {
                        Ok(Recovered::Released) => released.push(t.name.clone()),
                        Ok(Recovered::NotHeld) => {}
                        Err(e) => eprintln!(
                            "lockbydir: could not release lock `{}` left by plugin `{}`: {}; \
                             it frees itself at its deadline",
                            escape(&t.name),
                            escape(&self.plugin),
                            escape(&e.to_string())
                        ),
                    },
                }
            }
            // Closing also runs the component's destructor; a trap here changes nothing more.
            let _ = self.service.drop_raw(t.resource);
        }
        released
    }

    fn deny<T>(&self, why: String) -> wasmtime::Result<Result<T, imp::Error>> {
        eprintln!(
            "lockbydir: policy: refused plugin `{}`: {}",
            self.plugin,
            escape(&why)
        );
        Ok(Err(imp::Error::Denied(why)))
    }

    /// Whether lock `name`'s lockdir exists (as anything: an empty one counts, it is reused).
    fn lockdir_exists(&mut self, name: &str) -> bool {
        self.service.lock_exists(name)
    }

    fn held_count(&self) -> usize {
        self.open.values().filter(|t| t.fence.is_some()).count()
    }

    /// Note what an acquisition, refresh or release says about holding: `on_ok` is the
    /// fence held after success (`Some(None)`: none; `None`: unchanged).
    fn track<T>(&mut self, rep: u32, result: &Result<T, wit::Error>, on_ok: Option<Option<u64>>) {
        let Some(t) = self.open.get_mut(&rep) else {
            return;
        };
        match result {
            Ok(_) => {
                if let Some(fence) = on_ok {
                    t.fence = fence;
                }
            }
            Err(wit::Error::Compromised(_) | wit::Error::NotHeld) => t.fence = None,
            Err(_) => {}
        }
    }

    /// The patience a wait that starts now may have: the plugin's own, ended
    /// [`WAIT_MARGIN`] before its deadline.
    fn patience_now(&self, requested_ms: u64) -> u64 {
        match self.wait_until {
            None => requested_ms,
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                let left_ms = left.saturating_sub(WAIT_MARGIN).as_millis() as u64;
                requested_ms.min(left_ms)
            }
        }
    }
}

/// The names of the locks in `service` that `policy` lets the plugin use, sorted.
fn allowed_lock_names(
    service: &mut dyn LockBackend,
    policy: &LockPolicy,
) -> Result<Vec<String>, wit::Error> {
    let mut names = service.lock_names()?;
    names.retain(|name| policy.allows_name(name));
    Ok(names)
}

/// The host value behind a plugin's `lock` resource: the lock component's own handle.
pub struct PluginLock {
    resource: RawLock,
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
    fn entry(&self, lock: &Resource<PluginLock>) -> wasmtime::Result<(RawLock, String)> {
        let entry = self.table.get(lock)?;
        Ok((entry.resource, entry.name.clone()))
    }

    /// Give `lock`'s component handle the patience a wait starting now may have (the plugin's
    /// deadline comes closer while the handle stays open): a handle that does not hold its
    /// lock is replaced by a fresh one with that patience. Returns the handle to wait on.
    fn with_patience_now(&mut self, lock: &Resource<PluginLock>) -> wasmtime::Result<RawLock> {
        let rep = lock.rep();
        let t = self
            .ctx
            .open
            .get(&rep)
            .expect("every open handle is tracked");
        let patience = self.ctx.patience_now(t.options.patience_ms);
        let (resource, name) = (t.resource, t.name.clone());
        if patience == t.patience_ms {
            return Ok(resource);
        }
        let options = wit::Options {
            patience_ms: patience,
            ..t.options.clone()
        };
        // The name and options were accepted when the handle was opened.
        let Ok(fresh) = self.ctx.service.open_raw(&name, &options)? else {
            return Ok(resource);
        };
        self.ctx.service.drop_raw(resource)?;
        let t = self.ctx.open.get_mut(&rep).expect("checked");
        t.resource = fresh;
        t.patience_ms = patience;
        self.table.get_mut(lock)?.resource = fresh;
        Ok(fresh)
    }

    /// Acquire (waiting or not) under the policy, tracking the outcome.
    fn acquire_with(
        &mut self,
        lock: Resource<PluginLock>,
        wait: bool,
    ) -> wasmtime::Result<Result<imp::AcquireOutcome, imp::Error>> {
        let (resource, name) = self.entry(&lock)?;
        let rep = lock.rep();
        if self.ctx.open.get(&rep).is_some_and(|t| t.fence.is_some()) {
            return Ok(Err(imp::Error::AlreadyHeld));
        }
        if let Err(why) = self.ctx.policy.check_acquire(self.ctx.held_count()) {
            return self.ctx.deny(why);
        }
        // An acquisition of a lock whose lockdir does not exist creates it, for good: count
        // those against the plugin's cap. (Another process may create it at the same moment;
        // it then counts against this plugin too, which errs on the safe side.)
        let counted = self.ctx.policy.max_new_locks.is_some();
        let existed = !counted
            || self.ctx.open.get(&rep).is_some_and(|t| t.exists)
            || self.ctx.lockdir_exists(&name);
        if !existed && let Err(why) = self.ctx.policy.check_create(&name, self.ctx.created) {
            return self.ctx.deny(why);
        }
        // Try once first, so that a plugin that has to wait is announced once, up front.
        let mut outcome = self.ctx.service.try_acquire_raw(resource)?;
        if wait && let Ok(wit::AcquireOutcome::Busy(holder)) = &outcome {
            if !self.ctx.quiet {
                let now = self.ctx.service.now_ms_raw()?;
                let who = format!("plugin `{}`", self.ctx.plugin);
                eprintln!("{}", WaitNotice::new(&who, &name, holder.as_ref(), now));
            }
            let resource = self.with_patience_now(&lock)?;
            outcome = self.ctx.service.acquire_raw(resource)?;
        }
        let fence = match &outcome {
            Ok(wit::AcquireOutcome::Acquired(grant)) => Some(grant.fence),
            _ => None,
        };
        self.ctx.track(rep, &outcome, Some(fence));
        let exists_now = existed || self.ctx.lockdir_exists(&name);
        if !existed && exists_now {
            self.ctx.created += 1;
        }
        if counted
            && exists_now
            && let Some(t) = self.ctx.open.get_mut(&rep)
        {
            t.exists = true;
        }
        Ok(outcome.map(Into::into).map_err(Into::into))
    }
}

impl imp::Host for PluginLocks<'_> {
    /// Every lock the plugin may use. Under `--allow-lock` the lock component never lists the
    /// whole directory for the plugin: the host picks the names it may see and inspects only
    /// those, so neither the state nor an error about another lock reaches the plugin.
    fn list_locks(&mut self) -> wasmtime::Result<Result<Vec<imp::LockStatus>, imp::Error>> {
        if !self.ctx.policy.limits_names() {
            let r = self.ctx.service.list_locks_raw()?;
            return Ok(r
                .map(|v| v.into_iter().map(Into::into).collect())
                .map_err(Into::into));
        }
        let names = match allowed_lock_names(&mut *self.ctx.service, &self.ctx.policy) {
            Ok(names) => names,
            Err(e) => return Ok(Err(e.into())),
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let look = wit::Options {
                timeout_ms: 1,
                patience_ms: 0,
                min_poll_ms: 1,
                max_poll_ms: 1,
                max_clock_skew_ms: 0,
                holder: String::new(),
            };
            let resource = match self.ctx.service.open_raw(&name, &look)? {
                Ok(resource) => resource,
                Err(e) => return Ok(Err(e.into())),
            };
            let state = self.ctx.service.inspect_raw(resource);
            self.ctx.service.drop_raw(resource)?;
            // As the lock component lists: one broken lockdir is reported as broken, and
            // does not hide the others.
            match state? {
                Ok(wit::LockState::Absent) => {} // removed since the listing
                Ok(state) => out.push(imp::LockStatus {
                    name,
                    state: Ok(state.into()),
                }),
                Err(e) => out.push(imp::LockStatus {
                    name,
                    state: Err(e.into()),
                }),
            }
        }
        Ok(Ok(out))
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.ctx.service.now_ms_raw()
    }

    /// The queue of a lock the plugin may use; under `--allow-lock`, another lock's queue is
    /// refused as opening it would be.
    fn queue(&mut self, name: String) -> wasmtime::Result<Result<imp::QueueStatus, imp::Error>> {
        if let Err(why) = self.ctx.policy.check_name(&name) {
            return self.ctx.deny(why);
        }
        let r = self.ctx.service.queue_raw(&name)?;
        Ok(r.map(Into::into).map_err(Into::into))
    }
}

impl imp::HostLock for PluginLocks<'_> {
    fn open(
        &mut self,
        name: String,
        options: imp::Options,
    ) -> wasmtime::Result<Result<Resource<PluginLock>, imp::Error>> {
        let mut options: wit::Options = options.into();
        // Keep no more of the label than the lock directory does: nobody holds the rest.
        options.holder = kept_label(&options.holder).to_owned();
        if let Err(why) = self
            .ctx
            .policy
            .check_open(&name, options.timeout_ms, self.ctx.open.len())
        {
            return self.ctx.deny(why);
        }
        // Waits end before the plugin's deadline: capped again when a wait starts.
        let capped = wit::Options {
            patience_ms: self.ctx.patience_now(options.patience_ms),
            ..options.clone()
        };
        match self.ctx.service.open_raw(&name, &capped)? {
            Ok(resource) => {
                let handle = self.table.push(PluginLock {
                    resource,
                    name: name.clone(),
                })?;
                let tracked = Tracked {
                    resource,
                    name,
                    exists: false,
                    fence: None,
                    options,
                    patience_ms: capped.patience_ms,
                };
                self.ctx.open.insert(handle.rep(), tracked);
                Ok(Ok(handle))
            }
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
        self.acquire_with(lock, true)
    }

    fn try_acquire(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<imp::AcquireOutcome, imp::Error>> {
        self.acquire_with(lock, false)
    }

    fn refresh(&mut self, lock: Resource<PluginLock>) -> wasmtime::Result<Result<u64, imp::Error>> {
        let (resource, _) = self.entry(&lock)?;
        let r = self.ctx.service.refresh_raw(resource)?;
        self.ctx.track(lock.rep(), &r, None);
        Ok(r.map_err(Into::into))
    }

    fn release(
        &mut self,
        lock: Resource<PluginLock>,
    ) -> wasmtime::Result<Result<imp::ReleaseReport, imp::Error>> {
        let (resource, _) = self.entry(&lock)?;
        let r = self.ctx.service.release_raw(resource)?;
        self.ctx.track(lock.rep(), &r, Some(None));
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
        let held = self
            .ctx
            .open
            .remove(&lock.rep())
            .is_some_and(|t| t.fence.is_some());
        let entry = self.table.delete(lock)?;
        // The component's destructor releases the lock if this handle still holds it.
        self.ctx.service.drop_raw(entry.resource)?;
        if held {
            self.ctx.service.wake_waiters();
        }
        Ok(())
    }
}
