//! One instance of the lock component in a Store of its own, whose only preopen is the lock
//! directory. The host's Rust API to locks, and what each plugin's lock import forwards to.
//!
//! Its sleeps are precise (not tokio's 1 ms ticks). Where the lock directory's filesystem
//! delivers change events, the service advertises `LOCKBYDIR_WAKEUPS=stat-at` to the lock
//! component, and a waiter's sleep ends when the entry it waits on is renamed or removed, by
//! any process (modules `watched_stat`, `watch`); short sleeps without such a watch end when
//! a lock service of this process releases a lock in the same directory (module `wakeup`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lockbydir_protocol::recover::Recovered;
use wasmtime::Store;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::lock_component::LockComponent;
use crate::bindings::wit;
use crate::error::Error;
use crate::limits::{MemoryCap, OTHER_HANDLES};
use crate::runtime::Runtime;
use crate::wakeup::{self, ClockView, Sleeper};
pub use crate::wakeup::{MAX_CANCELLABLE_PATIENCE_MS, WaitCanceller, WaitStats};
use crate::watch::{self, Watcher};

/// The environment variable that turns the host's wake-ups off (`1`): the lock component then
/// polls, as on hosts without them (benchmarks and tests use it).
pub const NO_WAKEUPS_VAR: &str = "LOCKBYDIR_NO_WAKEUPS";

/// What the lock component's environment says when the host offers wake-ups.
const WAKEUPS_VAR: (&str, &str) = ("LOCKBYDIR_WAKEUPS", "stat-at");

/// Why a lock service's waiters poll instead of being woken, if they do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polling {
    /// `LOCKBYDIR_NO_WAKEUPS=1` is set.
    TurnedOff,
    /// This platform has no change notification lockbydir uses, or the kernel gave this
    /// process none (inotify's `fs.inotify.max_user_instances`).
    NoNotification,
    /// The lock directory's filesystem is not known to be local (NFS, SMB, FUSE, ...):
    /// another machine's changes make no event here.
    RemoteFilesystem,
}

impl Polling {
    /// Why, in words.
    pub fn reason(self) -> &'static str {
        match self {
            Polling::TurnedOff => "LOCKBYDIR_NO_WAKEUPS=1 is set",
            Polling::NoNotification => "no change notification for this process",
            Polling::RemoteFilesystem => {
                "the lock directory is not on a local filesystem, whose changes would make events here"
            }
        }
    }
}

/// The watcher for a service on `lock_dir`, or why there is none.
fn wakeups(lock_dir: &Path) -> Result<&'static Watcher, Polling> {
    if std::env::var_os(NO_WAKEUPS_VAR).is_some_and(|v| v == "1") {
        return Err(Polling::TurnedOff);
    }
    let watcher = Watcher::global().ok_or(Polling::NoNotification)?;
    if !watch::delivers_events(lock_dir) {
        return Err(Polling::RemoteFilesystem);
    }
    Ok(watcher)
}

/// The lock component's WASI state: nothing but the lock directory, clocks and randomness.
pub struct LockCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    /// What its monotonic clock's sleeps wait on.
    sleeper: Arc<Sleeper>,
    /// Its memory limit (a plugin's, shared with the plugin; none for the host's own).
    memory: MemoryCap,
}

impl WasiView for LockCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A lock component instance bound to one lock directory.
pub struct LockService {
    store: Store<LockCtx>,
    exports: LockComponent,
    lock_dir: PathBuf,
    polling: Option<Polling>,
}

/// A lock handle living in a [`LockService`]'s store. Give it back with
/// [`LockService::close`], or the component never learns it is gone.
#[derive(Debug)]
#[must_use = "a lock handle must be closed with LockService::close"]
pub struct LockHandle {
    resource: ResourceAny,
    name: String,
}

impl LockHandle {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What a lock service serving a plugin may hold on the plugin's behalf.
#[derive(Debug)]
pub struct ServiceLimits {
    /// Its linear memory, charged to the plugin's budget.
    pub memory: MemoryCap,
    /// How many lock handles the plugin may have open: the store holds that many besides
    /// its own WASI handles.
    pub lock_handles: usize,
}

impl LockService {
    /// Instantiate the lock component with `lock_dir` as its only preopen (mapped as `.`).
    pub fn new(runtime: &Runtime, lock_dir: &Path) -> Result<Self, Error> {
        let limits = ServiceLimits {
            memory: MemoryCap::unlimited(),
            lock_handles: OTHER_HANDLES,
        };
        Self::with_limits(runtime, lock_dir, limits)
    }

    /// [`LockService::new`] for a plugin: its memory counts against the plugin's limit, and
    /// its store holds as many lock handles as the plugin may open.
    pub fn with_limits(
        runtime: &Runtime,
        lock_dir: &Path,
        limits: ServiceLimits,
    ) -> Result<Self, Error> {
        check_lock_dir(lock_dir)?;
        let watcher = wakeups(lock_dir);
        let mut wasi = WasiCtx::builder();
        if watcher.is_ok() {
            wasi.env(WAKEUPS_VAR.0, WAKEUPS_VAR.1);
        }
        // The component's filesystem calls run on this thread instead of hopping through a
        // blocking pool (about 4x faster for this workload).
        wasi.allow_blocking_current_thread(true)
            .inherit_stderr()
            .preopened_dir(lock_dir, ".", FsPerms::ReadWrite)
            .map_err(|e| Error::LockDir {
                path: lock_dir.to_owned(),
                message: format!("cannot open it: {e:#}"),
            })?;
        let ctx = LockCtx {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            sleeper: Sleeper::new(lock_dir, watcher.ok()),
            memory: limits.memory,
        };
        let mut store = Store::new(runtime.engine(), ctx);
        store.limiter(|ctx| &mut ctx.memory);
        // Every lock handle a plugin opens is a handle in this store: without this, wasmtime's
        // default cap (100,000) would trap the component below the plugin's --max-handles.
        store.set_max_component_handles(limits.lock_handles.saturating_add(OTHER_HANDLES));
        // The lock component is trusted code: never interrupted.
        store.set_epoch_deadline(crate::limits::NO_DEADLINE_TICKS);
        let mut linker = Linker::new(runtime.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| {
                // Sleeps precise to the OS timer instead of tokio's 1 ms ticks, and woken by
                // releases in this process.
                wakeup::shadow_monotonic_clock(&mut linker, |ctx: &mut LockCtx| ClockView {
                    clocks: WasiClocksCtxView {
                        ctx: ctx.wasi.clocks(),
                        table: &mut ctx.table,
                    },
                    sleeper: &ctx.sleeper,
                })
            })
            // The lock component's requests to be woken (a stat of the entry it waits on).
            .and_then(|()| {
                crate::watched_stat::shadow_stat_at(&mut linker, |ctx: &LockCtx| &ctx.sleeper)
            })
            .map_err(|reason| Error::Component {
                what: "link WASI for the lock component".into(),
                reason,
            })?;
        let exports = LockComponent::instantiate(&mut store, runtime.lock_component(), &linker)
            .map_err(|reason| Error::Component {
                what: "instantiate the lock component".into(),
                reason,
            })?;
        let polling = match watcher {
            Ok(_) if !store.data().sleeper.watches() => Some(Polling::NoNotification),
            Ok(_) => None,
            Err(why) => Some(why),
        };
        Ok(LockService {
            store,
            exports,
            lock_dir: lock_dir.to_owned(),
            polling,
        })
    }

    /// Why this service's waiters poll, or `None` if the host wakes them when the entry they
    /// wait on changes.
    pub fn polling(&self) -> Option<Polling> {
        self.polling
    }

    /// How this service's waits went so far.
    pub fn wait_stats(&self) -> WaitStats {
        self.store.data().sleeper.stats()
    }

    /// How this service waits and how its waits went, in one line (`exec --verbose`).
    pub fn describe_waits(&self) -> String {
        let stats = self.wait_stats();
        match self.polling {
            None => format!(
                "waited with wake-ups offered by the host: {} stat-at calls, {} watched sleeps, {} woken by a change",
                stats.stat_at_calls, stats.watched_sleeps, stats.woken_sleeps
            ),
            Some(why) => format!(
                "waited by polling ({}): {} stat-at calls",
                why.reason(),
                stats.stat_at_calls
            ),
        }
    }

    /// The lock directory this service works in.
    pub fn lock_dir(&self) -> &Path {
        &self.lock_dir
    }

    /// Open a handle on lock `name`.
    pub fn open(&mut self, name: &str, options: &wit::Options) -> Result<LockHandle, Error> {
        let lock = self.exports.lockbydir_lock_lock().lock();
        let resource = lock
            .call_open(&mut self.store, name, options)
            .map_err(|reason| trap(reason, "opening", name))?
            .map_err(|error| Error::Lock {
                lock: name.to_owned(),
                dir: self.lock_dir.clone(),
                error,
            })?;
        Ok(LockHandle {
            resource,
            name: name.to_owned(),
        })
    }

    /// Open a handle and return the raw results, for forwarding to plugins.
    pub fn open_raw(
        &mut self,
        name: &str,
        options: &wit::Options,
    ) -> wasmtime::Result<Result<ResourceAny, wit::Error>> {
        self.store.data().sleeper.observe();
        let lock = self.exports.lockbydir_lock_lock().lock();
        lock.call_open(&mut self.store, name, options)
    }

    /// Close a handle (a held lock is released by the component's destructor, so this wakes
    /// the waiters of this process, as [`LockService::release`] does).
    pub fn close(&mut self, handle: LockHandle) -> Result<(), Error> {
        self.drop_raw(handle.resource)
            .map_err(|reason| trap(reason, "closing", &handle.name))?;
        self.wake_waiters();
        Ok(())
    }

    /// Drop a raw resource handle in the component. If it may have held its lock, call
    /// [`LockService::wake_waiters`] afterwards.
    pub fn drop_raw(&mut self, resource: ResourceAny) -> wasmtime::Result<()> {
        self.store.data().sleeper.observe();
        resource.resource_drop(&mut self.store)
    }

    /// Release lock `name` without the lock component, if its state is still the acquisition
    /// that was granted `fence` (see [`lockbydir_protocol::recover`]): for the locks of a
    /// plugin whose lock component can no longer be called (it trapped, or ran out of memory
    /// or handles). Wakes the waiters of this process when it released something.
    pub fn release_by_fence(
        &self,
        name: &str,
        fence: u64,
    ) -> Result<Recovered, lockbydir_protocol::Error> {
        let fs = lockbydir_protocol::StdFs::new(&self.lock_dir);
        let recovered = lockbydir_protocol::recover::release_by_fence(&fs, name, fence)?;
        if recovered == Recovered::Released {
            self.wake_waiters();
        }
        Ok(recovered)
    }

    /// End the current sleep of every lock service of this process waiting in this lock
    /// directory, so that they look at their lock again now instead of at their next poll.
    /// [`LockService::release_raw`] and [`LockService::close`] do it; call it after anything
    /// else that may have freed a lock (dropping a handle that held one).
    pub fn wake_waiters(&self) {
        self.store.data().sleeper.wake_all();
    }

    /// A handle that ends this service's waits from another thread: see [`WaitCanceller`].
    /// Patience must be at most [`MAX_CANCELLABLE_PATIENCE_MS`] for a cancel to end it.
    pub fn wait_canceller(&self) -> WaitCanceller {
        WaitCanceller::new(&self.store.data().sleeper)
    }

    /// Wait for the lock, up to the handle's patience.
    pub fn acquire(&mut self, handle: &LockHandle) -> Result<wit::AcquireOutcome, Error> {
        let r = self.acquire_raw(handle.resource);
        self.lift(r, "acquiring", &handle.name)
    }

    /// One attempt that never waits.
    pub fn try_acquire(&mut self, handle: &LockHandle) -> Result<wit::AcquireOutcome, Error> {
        let r = self.try_acquire_raw(handle.resource);
        self.lift(r, "trying", &handle.name)
    }

    /// Extend the deadline; returns the new one (ms since the epoch).
    pub fn refresh(&mut self, handle: &LockHandle) -> Result<u64, Error> {
        let r = self.refresh_raw(handle.resource);
        self.lift(r, "refreshing", &handle.name)
    }

    /// Release the lock.
    pub fn release(&mut self, handle: &LockHandle) -> Result<wit::ReleaseReport, Error> {
        let r = self.release_raw(handle.resource);
        self.lift(r, "releasing", &handle.name)
    }

    /// The lock's state now.
    pub fn inspect(&mut self, handle: &LockHandle) -> Result<wit::LockState, Error> {
        let r = self.inspect_raw(handle.resource);
        self.lift(r, "inspecting", &handle.name)
    }

    /// Every lock in the lock directory.
    pub fn list_locks(&mut self) -> Result<Vec<wit::LockStatus>, Error> {
        let r = self.list_locks_raw();
        self.lift(r, "listing", "*")
    }

    /// The waiters in lock `name`'s queue now.
    pub fn queue(&mut self, name: &str) -> Result<wit::QueueStatus, Error> {
        let r = self.queue_raw(name);
        self.lift(r, "looking at the queue of", name)
    }

    /// The lock component's wall clock, in ms since the epoch.
    pub fn now_ms(&mut self) -> Result<u64, Error> {
        self.now_ms_raw()
            .map_err(|reason| trap(reason, "reading the clock of", "*"))
    }

    fn lift<T>(
        &self,
        r: wasmtime::Result<Result<T, wit::Error>>,
        doing: &str,
        name: &str,
    ) -> Result<T, Error> {
        r.map_err(|reason| trap(reason, doing, name))?
            .map_err(|error| Error::Lock {
                lock: name.to_owned(),
                dir: self.lock_dir.clone(),
                error,
            })
    }
}

/// The raw calls, returning exactly what the component returned: used by the forwarding of
/// plugin imports, which hands error values to the plugin unchanged.
macro_rules! raw_calls {
    ($($(#[$doc:meta])* $raw:ident => $call:ident -> $ret:ty;)*) => {
        impl LockService {
            $(
                $(#[$doc])*
                pub fn $raw(&mut self, resource: ResourceAny) -> wasmtime::Result<$ret> {
                    self.store.data().sleeper.observe();
                    self.exports.lockbydir_lock_lock().lock().$call(&mut self.store, resource)
                }
            )*
        }
    };
}

raw_calls! {
    /// `lock.name`.
    name_raw => call_name -> String;
    /// `lock.acquire`.
    acquire_raw => call_acquire -> Result<wit::AcquireOutcome, wit::Error>;
    /// `lock.try-acquire`.
    try_acquire_raw => call_try_acquire -> Result<wit::AcquireOutcome, wit::Error>;
    /// `lock.refresh`.
    refresh_raw => call_refresh -> Result<u64, wit::Error>;
    /// `lock.inspect`.
    inspect_raw => call_inspect -> Result<wit::LockState, wit::Error>;
    /// `lock.fence`.
    fence_raw => call_fence -> Option<u64>;
}

impl LockService {
    /// `lock.release`; a successful release wakes the waiters of this process
    /// ([`LockService::wake_waiters`]).
    pub fn release_raw(
        &mut self,
        resource: ResourceAny,
    ) -> wasmtime::Result<Result<wit::ReleaseReport, wit::Error>> {
        self.store.data().sleeper.observe();
        let released = self
            .exports
            .lockbydir_lock_lock()
            .lock()
            .call_release(&mut self.store, resource)?;
        if released.is_ok() {
            self.wake_waiters();
        }
        Ok(released)
    }

    /// `list-locks`.
    pub fn list_locks_raw(&mut self) -> wasmtime::Result<Result<Vec<wit::LockStatus>, wit::Error>> {
        self.store.data().sleeper.observe();
        self.exports
            .lockbydir_lock_lock()
            .call_list_locks(&mut self.store)
    }

    /// `queue`.
    pub fn queue_raw(
        &mut self,
        name: &str,
    ) -> wasmtime::Result<Result<wit::QueueStatus, wit::Error>> {
        self.store.data().sleeper.observe();
        self.exports
            .lockbydir_lock_lock()
            .call_queue(&mut self.store, name)
    }

    /// `now-ms`.
    pub fn now_ms_raw(&mut self) -> wasmtime::Result<u64> {
        self.store.data().sleeper.observe();
        self.exports
            .lockbydir_lock_lock()
            .call_now_ms(&mut self.store)
    }
}

fn trap(reason: wasmtime::Error, doing: &str, name: &str) -> Error {
    Error::Trap {
        doing: format!("{doing} lock `{name}`"),
        reason,
    }
}

/// The lock directory must exist and be a directory; say which it is not.
fn check_lock_dir(dir: &Path) -> Result<(), Error> {
    let fail = |message: &str| Error::LockDir {
        path: dir.to_owned(),
        message: message.to_owned(),
    };
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("does not exist"),
        _ => fail(&format!("cannot be read: {e}")),
    })?;
    if !meta.is_dir() {
        return Err(fail("is not a directory"));
    }
    // Whether it is writable shows at the first lock operation, as an `io` error naming the
    // path: permission bits alone do not tell (root, read-only mounts, ACLs).
    Ok(())
}
