//! Where locks live: the lock component in a lock directory ([`LockService`], the default),
//! or another engine serving the same `lockbydir:lock/lock` interface (the `etcd` feature).
//!
//! [`LockBackend`] is what a plugin's lock import forwards to and what `exec` and `status`
//! use, through [`Locks`]: the calls of the WIT interface, with its error values returned
//! unchanged (a `wasmtime::Error` is a host bug, a trap).

use std::path::PathBuf;
use std::sync::Arc;

use lockbydir_protocol::LockName;
use lockbydir_protocol::recover::Recovered;
use wasmtime::component::ResourceAny;

use crate::bindings::wit;
use crate::error::Error;
use crate::lock_service::LockService;

/// A lock handle as a backend gave it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawLock {
    /// A `lock` resource of the lock component.
    Component(ResourceAny),
    /// A handle number of a backend that keeps its handles itself.
    Remote(u64),
}

/// Ends a backend's lock waits from another thread: the current one, and every later one at
/// once (as [`crate::lock_service::WaitCanceller`] does).
pub struct Canceller(Box<dyn Fn() + Send>);

impl Canceller {
    /// A canceller that calls `cancel`.
    pub fn new(cancel: impl Fn() + Send + 'static) -> Self {
        Canceller(Box::new(cancel))
    }

    /// Cancel the waits.
    pub fn cancel(&self) {
        (self.0)()
    }
}

/// The `lockbydir:lock/lock` interface as a backend serves it to the host (`Send`: a plugin's
/// store moves between threads).
pub trait LockBackend: Send {
    /// Where the locks live, for messages: a lock directory, or `etcd URL,...`.
    fn place(&self) -> String;
    /// `lock.open`.
    fn open_raw(
        &mut self,
        name: &str,
        options: &wit::Options,
    ) -> wasmtime::Result<Result<RawLock, wit::Error>>;
    /// Close a handle (one that holds its lock releases it).
    fn drop_raw(&mut self, lock: RawLock) -> wasmtime::Result<()>;
    /// `lock.acquire`: wait up to the handle's patience.
    fn acquire_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::AcquireOutcome, wit::Error>>;
    /// `lock.try-acquire`.
    fn try_acquire_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::AcquireOutcome, wit::Error>>;
    /// `lock.refresh`.
    fn refresh_raw(&mut self, lock: RawLock) -> wasmtime::Result<Result<u64, wit::Error>>;
    /// `lock.release`.
    fn release_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::ReleaseReport, wit::Error>>;
    /// `lock.inspect`.
    fn inspect_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::LockState, wit::Error>>;
    /// `lock.fence`: the fence this handle holds by its own record.
    fn fence_raw(&mut self, lock: RawLock) -> wasmtime::Result<Option<u64>>;
    /// `list-locks`.
    fn list_locks_raw(&mut self) -> wasmtime::Result<Result<Vec<wit::LockStatus>, wit::Error>>;
    /// `now-ms`: the clock deadlines are given in.
    fn now_ms_raw(&mut self) -> wasmtime::Result<u64>;
    /// `queue`: who waits for lock `name`.
    fn queue_raw(&mut self, name: &str) -> wasmtime::Result<Result<wit::QueueStatus, wit::Error>>;
    /// The names of every lock that exists, sorted (for a plugin allowed only some names).
    fn lock_names(&mut self) -> Result<Vec<String>, wit::Error>;
    /// Whether lock `name` exists (acquiring it creates nothing new).
    fn lock_exists(&mut self, name: &str) -> bool;
    /// Release lock `name` if it is still held with `fence`, without the handle: for the
    /// locks of a plugin whose handles can no longer be used.
    fn release_by_fence(&mut self, name: &str, fence: u64) -> Result<Recovered, String>;
    /// Tell this process's waiters to look again now (after something may have freed a lock).
    fn wake_waiters(&self);
    /// What ends this backend's waits from another thread.
    fn canceller(&self) -> Canceller;
    /// How this backend's waiters learn that a lock changed (for `exec --verbose`).
    fn describe_waits(&self) -> String;
    /// Whether its `io` errors are about a service rather than a lock directory: [`Locks`]
    /// then reports them as [`Error::Backend`] (etcd unreachable is not a filesystem fault).
    fn is_remote(&self) -> bool {
        false
    }
}

impl LockBackend for LockService {
    fn place(&self) -> String {
        self.lock_dir().display().to_string()
    }
    fn open_raw(
        &mut self,
        name: &str,
        options: &wit::Options,
    ) -> wasmtime::Result<Result<RawLock, wit::Error>> {
        Ok(LockService::open_raw(self, name, options)?.map(RawLock::Component))
    }
    fn drop_raw(&mut self, lock: RawLock) -> wasmtime::Result<()> {
        LockService::drop_raw(self, component(lock)?)
    }
    fn acquire_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::AcquireOutcome, wit::Error>> {
        LockService::acquire_raw(self, component(lock)?)
    }
    fn try_acquire_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::AcquireOutcome, wit::Error>> {
        LockService::try_acquire_raw(self, component(lock)?)
    }
    fn refresh_raw(&mut self, lock: RawLock) -> wasmtime::Result<Result<u64, wit::Error>> {
        LockService::refresh_raw(self, component(lock)?)
    }
    fn release_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::ReleaseReport, wit::Error>> {
        LockService::release_raw(self, component(lock)?)
    }
    fn inspect_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::LockState, wit::Error>> {
        LockService::inspect_raw(self, component(lock)?)
    }
    fn fence_raw(&mut self, lock: RawLock) -> wasmtime::Result<Option<u64>> {
        LockService::fence_raw(self, component(lock)?)
    }
    fn list_locks_raw(&mut self) -> wasmtime::Result<Result<Vec<wit::LockStatus>, wit::Error>> {
        LockService::list_locks_raw(self)
    }
    fn now_ms_raw(&mut self) -> wasmtime::Result<u64> {
        LockService::now_ms_raw(self)
    }
    fn queue_raw(&mut self, name: &str) -> wasmtime::Result<Result<wit::QueueStatus, wit::Error>> {
        LockService::queue_raw(self, name)
    }
    fn lock_names(&mut self) -> Result<Vec<String>, wit::Error> {
        let io = |e: std::io::Error| {
            wit::Error::Io(wit::IoError {
                operation: "read-dir".into(),
                path: ".".into(),
                message: e.to_string(),
            })
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.lock_dir()).map_err(io)? {
            let file_name = entry.map_err(io)?.file_name();
            if let Some(name) = file_name.to_str().and_then(LockName::from_lockdir) {
                names.push(name.as_str().to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn lock_exists(&mut self, name: &str) -> bool {
        let lockdir = format!("{name}{}", lockbydir_protocol::name::LOCKDIR_SUFFIX);
        std::fs::symlink_metadata(self.lock_dir().join(lockdir)).is_ok()
    }
    fn release_by_fence(&mut self, name: &str, fence: u64) -> Result<Recovered, String> {
        LockService::release_by_fence(self, name, fence).map_err(|e| e.to_string())
    }
    fn wake_waiters(&self) {
        LockService::wake_waiters(self)
    }
    fn describe_waits(&self) -> String {
        LockService::describe_waits(self)
    }
    fn canceller(&self) -> Canceller {
        let canceller = self.wait_canceller();
        Canceller::new(move || canceller.cancel())
    }
}

/// A lock component handle: a handle of another backend here is a host bug.
fn component(lock: RawLock) -> wasmtime::Result<ResourceAny> {
    match lock {
        RawLock::Component(r) => Ok(r),
        RawLock::Remote(_) => Err(wasmtime::Error::msg(
            "a handle of another backend was passed to the lock component",
        )),
    }
}

/// Opens a fresh backend for each plugin run (each plugin gets locks of its own).
pub type BackendFactory = Arc<dyn Fn() -> Result<Box<dyn LockBackend>, Error> + Send + Sync>;

/// A backend with the host's typed API: every call returns [`Error`] (the lock's error value,
/// or a trap), like [`LockService`]'s own methods.
pub struct Locks {
    backend: Box<dyn LockBackend>,
    /// Where the locks live, as [`Error::Lock`] names it.
    place: PathBuf,
}

/// A handle opened through [`Locks::open`]; give it back with [`Locks::close`].
#[derive(Debug)]
#[must_use = "a lock handle must be closed with Locks::close"]
pub struct Handle {
    raw: RawLock,
    name: String,
}

impl Handle {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Locks {
    /// The typed API over `backend`.
    pub fn new(backend: Box<dyn LockBackend>) -> Self {
        let place = PathBuf::from(backend.place());
        Locks { backend, place }
    }

    /// Where the locks live (a lock directory, or `etcd URL,...`).
    pub fn place(&self) -> &std::path::Path {
        &self.place
    }

    /// Open a handle on lock `name`.
    pub fn open(&mut self, name: &str, options: &wit::Options) -> Result<Handle, Error> {
        let raw = self.backend.open_raw(name, options);
        let raw = self.lift(raw, "opening", name)?;
        Ok(Handle {
            raw,
            name: name.to_owned(),
        })
    }

    /// Close a handle (releasing its lock if it holds it).
    pub fn close(&mut self, handle: Handle) -> Result<(), Error> {
        self.backend
            .drop_raw(handle.raw)
            .map_err(|reason| trap(reason, "closing", &handle.name))?;
        self.backend.wake_waiters();
        Ok(())
    }

    /// Wait for the lock, up to the handle's patience.
    pub fn acquire(&mut self, handle: &Handle) -> Result<wit::AcquireOutcome, Error> {
        let r = self.backend.acquire_raw(handle.raw);
        self.lift(r, "acquiring", &handle.name)
    }

    /// One attempt that never waits.
    pub fn try_acquire(&mut self, handle: &Handle) -> Result<wit::AcquireOutcome, Error> {
        let r = self.backend.try_acquire_raw(handle.raw);
        self.lift(r, "trying", &handle.name)
    }

    /// Extend the deadline; returns the new one (ms since the epoch).
    pub fn refresh(&mut self, handle: &Handle) -> Result<u64, Error> {
        let r = self.backend.refresh_raw(handle.raw);
        self.lift(r, "refreshing", &handle.name)
    }

    /// Release the lock.
    pub fn release(&mut self, handle: &Handle) -> Result<wit::ReleaseReport, Error> {
        let r = self.backend.release_raw(handle.raw);
        self.lift(r, "releasing", &handle.name)
    }

    /// The lock's state now.
    pub fn inspect(&mut self, handle: &Handle) -> Result<wit::LockState, Error> {
        let r = self.backend.inspect_raw(handle.raw);
        self.lift(r, "inspecting", &handle.name)
    }

    /// Every lock there is.
    pub fn list_locks(&mut self) -> Result<Vec<wit::LockStatus>, Error> {
        let r = self.backend.list_locks_raw();
        self.lift(r, "listing", "*")
    }

    /// Who waits for lock `name`.
    pub fn queue(&mut self, name: &str) -> Result<wit::QueueStatus, Error> {
        let r = self.backend.queue_raw(name);
        self.lift(r, "looking at the queue of", name)
    }

    /// The backend's clock, in ms since the epoch.
    pub fn now_ms(&mut self) -> Result<u64, Error> {
        self.backend
            .now_ms_raw()
            .map_err(|reason| trap(reason, "reading the clock of", "*"))
    }

    /// How this backend's waiters learn that a lock changed (for `exec --verbose`).
    pub fn describe_waits(&self) -> String {
        self.backend.describe_waits()
    }

    /// What ends this backend's waits from another thread.
    pub fn wait_canceller(&self) -> Canceller {
        self.backend.canceller()
    }

    fn lift<T>(
        &self,
        r: wasmtime::Result<Result<T, wit::Error>>,
        doing: &str,
        name: &str,
    ) -> Result<T, Error> {
        r.map_err(|reason| trap(reason, doing, name))?
            .map_err(|error| match error {
                wit::Error::Io(io) if self.backend.is_remote() => Error::Backend {
                    place: self.place.display().to_string(),
                    message: format!(
                        "{doing} lock `{name}`: {} `{}` failed: {}; check that the cluster \
                         is up and reachable",
                        io.operation, io.path, io.message
                    ),
                },
                error => Error::Lock {
                    lock: name.to_owned(),
                    dir: self.place.clone(),
                    error,
                },
            })
    }
}

fn trap(reason: wasmtime::Error, doing: &str, name: &str) -> Error {
    Error::Trap {
        doing: format!("{doing} lock `{name}`"),
        reason,
    }
}
