//! The lockdir backend: one instance of the lock component in a Store of its own, whose only
//! preopen is the lock directory.
//!
//! Its sleeps are precise (not tokio's 1 ms ticks). Where the lock directory's filesystem
//! delivers change events, the service advertises `LOCKBYDIR_WAKEUPS=stat-at` to the lock
//! component, and a waiter's sleep ends when the entry it waits on is renamed or removed, by
//! any process (modules `watched_stat`, `watch`); short sleeps without such a watch end when
//! a lock service of this process releases a lock in the same directory (module `wakeup`).

mod async_wait;
mod listing;
mod wakeup;
mod watch;
mod watched_stat;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lockbydir_protocol::LockName;
use lockbydir_protocol::recover::Recovered;
use wasmtime::Store;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::{AsyncWait, Backend, Canceller, Limits, WaitMode, Waits};
use crate::bindings::provider::Provider;
use crate::bindings::types::{
    AcquireOutcome, Error as Value, IoError, LockState, LockStatus, Options, QueueStatus,
    ReleaseReport,
};
use crate::error::Error;
use crate::handle::LockId;
use crate::limits::{MemoryCap, OTHER_HANDLES};
use crate::runtime::Runtime;
use wakeup::{ClockView, Sleeper};
pub use wakeup::{MAX_CANCELLABLE_PATIENCE_MS, WaitStats};
use watch::Watcher;

/// The environment variable that turns the host's wake-ups off (`1`): the lock component then
/// polls, as on hosts without them (benchmarks and tests use it).
pub const NO_WAKEUPS_VAR: &str = "LOCKBYDIR_NO_WAKEUPS";

/// What the lock component's environment says when the host offers wake-ups.
const WAKEUPS_VAR: (&str, &str) = ("LOCKBYDIR_WAKEUPS", "stat-at");

/// Why a lockdir backend's waiters poll instead of being woken, if they do.
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

/// The watcher for a backend on `lock_dir`, or why there is none.
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
struct LockCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    /// What its monotonic clock's sleeps wait on.
    sleeper: Arc<Sleeper>,
    /// Its memory limit (a plugin's, shared with the plugin; none for the host's own).
    memory: MemoryCap,
    /// Directory listings it made (each through `listing`, without a stat per entry).
    #[cfg_attr(not(test), allow(dead_code))]
    listings: u64,
}

impl WasiView for LockCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Lockdirs in a lock directory, served by a lock component instance of this backend's own.
///
/// Its sleeps are precise (not tokio's 1 ms ticks). Where the lock directory's filesystem
/// delivers change events, the backend advertises `LOCKBYDIR_WAKEUPS=stat-at` to the lock
/// component, and a waiter's sleep ends when the entry it waits on is renamed or removed, by
/// any process; short sleeps without such a watch end when a backend of this process releases
/// a lock in the same directory.
pub struct LockDirBackend {
    /// The lock component, shared with this backend's async waits (each call locks it only
    /// while it runs).
    component: Arc<Mutex<LockComponent>>,
    /// Its Store's sleeper (wake-ups, wait statistics, cancelling), without the lock.
    sleeper: Arc<Sleeper>,
    /// The change notification waiters are woken by, if any.
    watcher: Option<&'static Watcher>,
    lock_dir: PathBuf,
    /// The lock directory as messages name it.
    place: String,
    polling: Option<Polling>,
    /// The open handles: the lock component's resource, and the lock's name.
    handles: BTreeMap<LockId, (ResourceAny, String)>,
    next: u64,
}

/// The lock component instance and its Store.
struct LockComponent {
    store: Store<LockCtx>,
    exports: Provider,
}

impl LockComponent {
    fn lock(component: &Mutex<LockComponent>) -> MutexGuard<'_, LockComponent> {
        component.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LockDirBackend {
    /// Instantiate the lock component with `lock_dir`, an existing directory, as its only
    /// preopen (mapped as `.`).
    pub fn new(runtime: &Runtime, lock_dir: &Path) -> Result<Self, Error> {
        Self::with_limits(runtime, lock_dir, Limits::default())
    }

    /// [`LockDirBackend::new`] for a plugin: the lock component's memory counts against the
    /// plugin's limit, and its store holds as many lock handles as the plugin may open.
    pub fn with_limits(runtime: &Runtime, lock_dir: &Path, limits: Limits) -> Result<Self, Error> {
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
            listings: 0,
        };
        let mut store = Store::new(runtime.engine(), ctx);
        store.limiter(|ctx| &mut ctx.memory);
        // Every lock handle a plugin opens is a handle in this store: without this, wasmtime's
        // default cap (100,000) would trap the component below the plugin's handle cap.
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
            .and_then(|()| watched_stat::shadow_stat_at(&mut linker, |ctx: &LockCtx| &ctx.sleeper))
            // Listings whose cost does not grow with the number of entries.
            .and_then(|()| {
                listing::shadow_read_directory(&mut linker, |ctx: &mut LockCtx| ctx.listings += 1)
            })
            .map_err(|reason| Error::Component {
                what: "link WASI for the lock component".into(),
                reason,
            })?;
        let exports = Provider::instantiate(&mut store, runtime.lock_component(), &linker)
            .map_err(|reason| Error::Component {
                what: "instantiate the lock component".into(),
                reason,
            })?;
        let polling = match watcher {
            Ok(_) if !store.data().sleeper.watches() => Some(Polling::NoNotification),
            Ok(_) => None,
            Err(why) => Some(why),
        };
        let sleeper = Arc::clone(&store.data().sleeper);
        Ok(LockDirBackend {
            component: Arc::new(Mutex::new(LockComponent { store, exports })),
            sleeper,
            watcher: if polling.is_none() {
                watcher.ok()
            } else {
                None
            },
            place: lock_dir.display().to_string(),
            lock_dir: lock_dir.to_owned(),
            polling,
            handles: BTreeMap::new(),
            next: 1,
        })
    }

    /// The lock directory this backend works in.
    pub fn lock_dir(&self) -> &Path {
        &self.lock_dir
    }

    /// Why this backend's waiters poll, or `None` if the host wakes them when the entry they
    /// wait on changes.
    pub fn polling(&self) -> Option<Polling> {
        self.polling
    }

    /// How this backend's waits went so far.
    pub fn wait_stats(&self) -> WaitStats {
        self.sleeper.stats()
    }

    /// How many directory listings the lock component made so far.
    #[cfg(test)]
    pub(crate) fn listings(&self) -> u64 {
        LockComponent::lock(&self.component).store.data().listings
    }

    /// End the current sleep of every lockdir backend of this process waiting in this lock
    /// directory, so that they look at their lock again now instead of at their next poll.
    /// Releases (and closing a handle) do it themselves.
    pub fn wake_waiters(&self) {
        self.sleeper.wake_all();
    }

    /// Lock `name` was released by this backend: wake this process's waiters on it (see
    /// [`wakeup::Sleeper::released`]).
    fn released(&self, name: &str) {
        let lockdir = format!("{name}{}", lockbydir_protocol::name::LOCKDIR_SUFFIX);
        self.sleeper.released(&lockdir);
    }

    /// The lock component's handle behind `lock`, and the lock's name; a handle this backend
    /// did not give out is a host bug.
    fn handle(&self, lock: LockId) -> Result<(ResourceAny, &str), Error> {
        match self.handles.get(&lock) {
            Some((resource, name)) => Ok((*resource, name)),
            None => Err(Error::Trap {
                doing: format!("using lock handle {}", lock.0),
                reason: wasmtime::Error::msg("no such handle is open in this lockdir backend"),
            }),
        }
    }

    /// Call `call` on `lock`'s resource; its error value, or its trap, in the host's terms.
    fn call<T>(
        &mut self,
        lock: LockId,
        doing: &str,
        call: impl FnOnce(
            &Provider,
            &mut Store<LockCtx>,
            ResourceAny,
        ) -> wasmtime::Result<Result<T, Value>>,
    ) -> Result<T, Error> {
        let (resource, name) = self.handle(lock)?;
        let name = name.to_owned();
        self.sleeper.observe();
        let result = {
            let mut c = LockComponent::lock(&self.component);
            let c = &mut *c;
            call(&c.exports, &mut c.store, resource)
        };
        self.lift(result, doing, &name)
    }

    /// Call `call` on the lock component (no handle).
    fn call_component<T>(
        &self,
        call: impl FnOnce(&Provider, &mut Store<LockCtx>) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        let mut c = LockComponent::lock(&self.component);
        let c = &mut *c;
        call(&c.exports, &mut c.store)
    }

    fn lift<T>(
        &self,
        result: wasmtime::Result<Result<T, Value>>,
        doing: &str,
        name: &str,
    ) -> Result<T, Error> {
        result
            .map_err(|reason| Error::Trap {
                doing: format!("{doing} lock `{name}`"),
                reason: not_an_exit(reason),
            })?
            .map_err(|error| Error::Lock {
                lock: name.to_owned(),
                place: self.place.clone(),
                error,
            })
    }
}

impl Backend for LockDirBackend {
    fn place(&self) -> &str {
        &self.place
    }

    fn open(&mut self, name: &str, options: &Options) -> Result<LockId, Error> {
        self.sleeper.observe();
        let opened =
            self.call_component(|e, s| e.lockbydir_lock_lock().lock().call_open(s, name, options));
        let resource = self.lift(opened, "opening", name)?;
        let id = LockId(self.next);
        self.next += 1;
        self.handles.insert(id, (resource, name.to_owned()));
        Ok(id)
    }

    fn close(&mut self, lock: LockId) -> Result<(), Error> {
        let (resource, name) = self.handle(lock)?;
        let name = name.to_owned();
        self.handles.remove(&lock);
        self.sleeper.observe();
        let trap = |reason| Error::Trap {
            doing: format!("closing lock `{name}`"),
            reason: not_an_exit(reason),
        };
        let held = self
            .call_component(|e, s| {
                let held = e
                    .lockbydir_lock_lock()
                    .lock()
                    .call_fence(&mut *s, resource)?;
                // The component's destructor releases the lock if the handle holds it.
                resource.resource_drop(s)?;
                Ok(held)
            })
            .map_err(trap)?;
        if held.is_some() {
            self.released(&name);
        }
        Ok(())
    }

    fn acquire(&mut self, lock: LockId) -> Result<AcquireOutcome, Error> {
        self.call(lock, "acquiring", |e, s, r| {
            e.lockbydir_lock_lock().lock().call_acquire(s, r)
        })
    }

    fn wait_async(&mut self, lock: LockId) -> Result<AsyncWait, Error> {
        let (resource, name) = self.handle(lock)?;
        let wait = async_wait::StepWait {
            component: Arc::clone(&self.component),
            resource,
            name: name.to_owned(),
            place: self.place.clone(),
            // As the sync sleeps' watches name it, so that a release here rings both.
            lock_dir: self
                .sleeper
                .watched_lock_dir()
                .unwrap_or(&self.lock_dir)
                .to_owned(),
            watcher: self.watcher,
            done: false,
        };
        Ok(AsyncWait::new(wait.run()))
    }

    fn try_acquire(&mut self, lock: LockId) -> Result<AcquireOutcome, Error> {
        self.call(lock, "trying", |e, s, r| {
            e.lockbydir_lock_lock().lock().call_try_acquire(s, r)
        })
    }

    fn refresh(&mut self, lock: LockId) -> Result<u64, Error> {
        self.call(lock, "refreshing", |e, s, r| {
            e.lockbydir_lock_lock().lock().call_refresh(s, r)
        })
    }

    fn release(&mut self, lock: LockId) -> Result<ReleaseReport, Error> {
        let released = self.call(lock, "releasing", |e, s, r| {
            e.lockbydir_lock_lock().lock().call_release(s, r)
        });
        if released.is_ok() {
            let name = self.handle(lock)?.1.to_owned();
            self.released(&name);
        }
        released
    }

    fn inspect(&mut self, lock: LockId) -> Result<LockState, Error> {
        self.call(lock, "inspecting", |e, s, r| {
            e.lockbydir_lock_lock().lock().call_inspect(s, r)
        })
    }

    fn fence(&mut self, lock: LockId) -> Result<Option<u64>, Error> {
        self.call(lock, "reading the fence of", |e, s, r| {
            e.lockbydir_lock_lock().lock().call_fence(s, r).map(Ok)
        })
    }

    fn list_locks(&mut self) -> Result<Vec<LockStatus>, Error> {
        self.sleeper.observe();
        let listed = self.call_component(|e, s| e.lockbydir_lock_lock().call_list_locks(s));
        self.lift(listed, "listing", "*")
    }

    fn now_ms(&mut self) -> Result<u64, Error> {
        let now = self.call_component(|e, s| e.lockbydir_lock_lock().call_now_ms(s));
        self.lift(now.map(Ok), "reading the clock of", "*")
    }

    fn queue(&mut self, name: &str) -> Result<QueueStatus, Error> {
        self.sleeper.observe();
        let queue = self.call_component(|e, s| e.lockbydir_lock_lock().call_queue(s, name));
        self.lift(queue, "looking at the queue of", name)
    }

    fn lock_names(&mut self) -> Result<Vec<String>, Error> {
        let io = |e: std::io::Error| Error::Lock {
            lock: "*".into(),
            place: self.place.clone(),
            error: Value::Io(IoError {
                operation: "read-dir".into(),
                path: ".".into(),
                message: e.to_string(),
            }),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.lock_dir).map_err(io)? {
            let file_name = entry.map_err(io)?.file_name();
            if let Some(name) = file_name.to_str().and_then(LockName::from_lockdir) {
                names.push(name.as_str().to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn lock_exists(&mut self, name: &str) -> Result<bool, Error> {
        let lockdir = format!("{name}{}", lockbydir_protocol::name::LOCKDIR_SUFFIX);
        Ok(std::fs::symlink_metadata(self.lock_dir.join(lockdir)).is_ok())
    }

    fn release_by_fence(&mut self, name: &str, fence: u64) -> Result<bool, Error> {
        let fs = lockbydir_protocol::StdFs::new(&self.lock_dir);
        let recovered = lockbydir_protocol::recover::release_by_fence(&fs, name, fence);
        let released = recovered.map_err(|e| Error::Lock {
            lock: name.to_owned(),
            place: self.place.clone(),
            error: Value::Io(IoError {
                operation: "release".into(),
                path: format!("{name}{}", lockbydir_protocol::name::LOCKDIR_SUFFIX),
                message: e.to_string(),
            }),
        })? == Recovered::Released;
        if released {
            self.released(name);
        }
        Ok(released)
    }

    fn waits(&self) -> Waits {
        let sleeper = Arc::clone(&self.sleeper);
        let stats = self.wait_stats();
        Waits {
            canceller: Canceller::new(move || sleeper.cancel()),
            mode: match self.polling {
                None => WaitMode::Woken {
                    looks: stats.stat_at_calls,
                    sleeps: stats.watched_sleeps,
                    woken: stats.woken_sleeps,
                },
                Some(why) => WaitMode::Polling {
                    why,
                    looks: stats.stat_at_calls,
                },
            },
        }
    }

    fn command_env(&self) -> Vec<(String, String)> {
        vec![("LOCKBYDIR_DIR".into(), self.place.clone())]
    }
}

impl Drop for LockDirBackend {
    /// Handles still open are closed, so that the locks they hold are released and their
    /// places in line given up (as dropping a lock handle does).
    fn drop(&mut self) {
        let open: Vec<LockId> = self.handles.keys().copied().collect();
        for lock in open {
            let _ = self.close(lock);
        }
    }
}

/// A trap of the lock component, with its exit (Rust's abort when an allocation fails exits
/// with status 1) turned into a plain error: passed on through a plugin's lock import, an
/// `I32Exit` would read as the plugin's own exit status, and the plugin would seem to have
/// ended by itself.
fn not_an_exit(reason: wasmtime::Error) -> wasmtime::Error {
    match reason.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(exit) => wasmtime::Error::msg(format!(
            "the lock component exited with status {} (it does so only when it cannot go on, \
             for example when its memory cannot grow)",
            exit.0
        )),
        None => reason,
    }
}

/// The lock directory must exist and be a directory; say which it is not.
fn check_lock_dir(dir: &Path) -> Result<(), Error> {
    let fail = |message: String| Error::LockDir {
        path: dir.to_owned(),
        message,
    };
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("it does not exist".into()),
        _ => fail(format!("it cannot be read: {e}")),
    })?;
    if !meta.is_dir() {
        return Err(fail("it is not a directory".into()));
    }
    // Whether it is writable shows at the first lock operation, as an `io` error naming the
    // path: permission bits alone do not tell (root, read-only mounts, ACLs).
    Ok(())
}
