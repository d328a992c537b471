//! Where locks live: the [`Backend`] trait, its implementations, and [`Place`], the one place
//! a backend is chosen.
//!
//! - [`lockdir`]: lockdirs in a lock directory, served by the lock component (the default);
//! - `etcd` (feature `etcd`): an etcd cluster, for processes on several machines.
//!
//! A backend serves the calls of the `lockbydir:lock/lock` interface in plain Rust: handles
//! are [`LockId`] numbers, values are the interface's [`crate::types`], and every call returns the
//! host's [`Error`] (the interface's error value as [`Error::Lock`]; anything else is a
//! failure of the host, which a plugin's call turns into a trap).

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod lockdir;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::bindings::types::{
    AcquireOutcome, LockState, LockStatus, Options, QueueStatus, ReleaseReport,
};
use crate::error::Error;
use crate::handle::LockId;
use crate::limits::MemoryCap;
use crate::runtime::Runtime;

pub use lockdir::{LockDirBackend, Polling};

/// The `lockbydir:lock/lock` interface, as a backend serves it to the host (`Send`: a
/// plugin's Store moves between threads).
///
/// # Examples
///
/// ```
/// use lockbydir::backend::{Backend, Place};
/// use lockbydir::types::{AcquireOutcome, Options};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("lockbydir-doc-backend-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let runtime = lockbydir::RuntimeBuilder::new().build()?;
/// let mut locks = Place::LockDir(dir.clone()).open(&runtime)?;
/// let options = Options { holder: Some("me".into()), ..Options::default() };
/// let lock = locks.open("bed", &options)?;
/// let AcquireOutcome::Acquired(grant) = locks.try_acquire(lock)? else { panic!("busy") };
/// assert_eq!(locks.fence(lock)?, Some(grant.fence));
/// locks.release(lock)?;
/// locks.close(lock)?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub trait Backend: Send {
    /// Where the locks live, for messages: a lock directory, or `etcd URL,...`.
    fn place(&self) -> &str;
    /// `lock.open`: a handle on lock `name`; nothing is created yet.
    fn open(&mut self, name: &str, options: &Options) -> Result<LockId, Error>;
    /// Close a handle; one that holds its lock releases it, one that waits leaves the line.
    fn close(&mut self, lock: LockId) -> Result<(), Error>;
    /// `lock.acquire`: wait in line, up to the handle's `wait-ms`.
    fn acquire(&mut self, lock: LockId) -> Result<AcquireOutcome, Error>;
    /// `waiting.acquire`: the wait of [`Backend::acquire`] as a future that holds no thread
    /// while it waits (it sleeps on the host's change notification or a timer between
    /// looks). Dropping it before it is done gives the handle's place in line up at once.
    ///
    /// The future does not borrow the backend: the handle's other calls may go on meanwhile
    /// (a caller allows one wait per handle at a time).
    fn wait_async(&mut self, lock: LockId) -> Result<AsyncWait, Error> {
        let _ = lock;
        Err(Error::Lock {
            lock: String::new(),
            place: self.place().to_owned(),
            error: crate::types::Error::Denied(format!(
                "this host's backend ({}) cannot wait without blocking: use `lock.acquire`",
                self.place()
            )),
        })
    }
    /// `lock.try-acquire`: one attempt that never waits.
    fn try_acquire(&mut self, lock: LockId) -> Result<AcquireOutcome, Error>;
    /// `lock.refresh`: extend the deadline; returns the new one (ms since the epoch).
    fn refresh(&mut self, lock: LockId) -> Result<u64, Error>;
    /// `lock.release`.
    fn release(&mut self, lock: LockId) -> Result<ReleaseReport, Error>;
    /// `lock.inspect`: the lock's state now.
    fn inspect(&mut self, lock: LockId) -> Result<LockState, Error>;
    /// `lock.fence`: the fence this handle holds, by its own record.
    fn fence(&mut self, lock: LockId) -> Result<Option<u64>, Error>;
    /// `list-locks`: every lock there is, sorted by name.
    fn list_locks(&mut self) -> Result<Vec<LockStatus>, Error>;
    /// `now-ms`: the clock deadlines are given in.
    fn now_ms(&mut self) -> Result<u64, Error>;
    /// `queue`: who waits for lock `name`.
    fn queue(&mut self, name: &str) -> Result<QueueStatus, Error>;
    /// The names of every lock that exists, sorted (for a caller allowed only some names,
    /// who may not see the others' states).
    fn lock_names(&mut self) -> Result<Vec<String>, Error>;
    /// Whether lock `name` exists already (acquiring it would create nothing).
    fn lock_exists(&mut self, name: &str) -> Result<bool, Error>;
    /// Release lock `name` if it is still held with `fence`, without the handle, for the locks
    /// of a plugin whose handles can no longer be used (its lock component trapped); `false`
    /// if it was no longer held so.
    fn release_by_fence(&mut self, name: &str, fence: u64) -> Result<bool, Error>;
    /// Ending this backend's waits from another thread, and how they went.
    fn waits(&self) -> Waits;
    /// What a command run under one of these locks is told about where it lives (`exec` sets
    /// these variables for it).
    fn command_env(&self) -> Vec<(String, String)>;
}

/// A wait begun by [`Backend::wait_async`]: a future of the wait's outcome, `Send`, that
/// gives the handle's place in line up when dropped before it is done.
#[must_use = "a wait does nothing unless awaited, and gives its place up when dropped"]
pub struct AsyncWait(Pin<Box<dyn Future<Output = Result<AcquireOutcome, Error>> + Send>>);

impl AsyncWait {
    /// The wait that `wait` does (a future that withdraws its ticket when dropped).
    pub fn new(wait: impl Future<Output = Result<AcquireOutcome, Error>> + Send + 'static) -> Self {
        AsyncWait(Box::pin(wait))
    }
}

impl Future for AsyncWait {
    type Output = Result<AcquireOutcome, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for AsyncWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncWait")
    }
}

/// Run `f`, which blocks (the lock component's WASI calls, the etcd client's `block_on`),
/// outside any tokio runtime this thread drives: where it is called from a task (a plugin
/// Store driven with `run_concurrent`), blocking in place would panic. On a multi-thread
/// runtime `f` runs in place (`block_in_place`); on a current-thread runtime, on a thread of
/// its own for the call; outside a runtime, as it is.
pub(crate) fn outside_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// A backend whose every call leaves the async context first ([`outside_async`]) once
/// `active`: what a plugin Store driven with `run_concurrent` calls.
pub(crate) struct OutsideAsync {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) active: bool,
}

impl OutsideAsync {
    fn call<R: Send>(&mut self, f: impl FnOnce(&mut dyn Backend) -> R + Send) -> R {
        let backend = &mut *self.backend;
        if self.active {
            outside_async(|| f(backend))
        } else {
            f(backend)
        }
    }
}

impl Backend for OutsideAsync {
    fn place(&self) -> &str {
        self.backend.place()
    }
    fn open(&mut self, name: &str, options: &Options) -> Result<LockId, Error> {
        self.call(|b| b.open(name, options))
    }
    fn close(&mut self, lock: LockId) -> Result<(), Error> {
        self.call(|b| b.close(lock))
    }
    fn acquire(&mut self, lock: LockId) -> Result<AcquireOutcome, Error> {
        self.call(|b| b.acquire(lock))
    }
    fn wait_async(&mut self, lock: LockId) -> Result<AsyncWait, Error> {
        self.call(|b| b.wait_async(lock))
    }
    fn try_acquire(&mut self, lock: LockId) -> Result<AcquireOutcome, Error> {
        self.call(|b| b.try_acquire(lock))
    }
    fn refresh(&mut self, lock: LockId) -> Result<u64, Error> {
        self.call(|b| b.refresh(lock))
    }
    fn release(&mut self, lock: LockId) -> Result<ReleaseReport, Error> {
        self.call(|b| b.release(lock))
    }
    fn inspect(&mut self, lock: LockId) -> Result<LockState, Error> {
        self.call(|b| b.inspect(lock))
    }
    fn fence(&mut self, lock: LockId) -> Result<Option<u64>, Error> {
        self.call(|b| b.fence(lock))
    }
    fn list_locks(&mut self) -> Result<Vec<LockStatus>, Error> {
        self.call(|b| b.list_locks())
    }
    fn now_ms(&mut self) -> Result<u64, Error> {
        self.call(|b| b.now_ms())
    }
    fn queue(&mut self, name: &str) -> Result<QueueStatus, Error> {
        self.call(|b| b.queue(name))
    }
    fn lock_names(&mut self) -> Result<Vec<String>, Error> {
        self.call(|b| b.lock_names())
    }
    fn lock_exists(&mut self, name: &str) -> Result<bool, Error> {
        self.call(|b| b.lock_exists(name))
    }
    fn release_by_fence(&mut self, name: &str, fence: u64) -> Result<bool, Error> {
        self.call(|b| b.release_by_fence(name, fence))
    }
    fn waits(&self) -> Waits {
        self.backend.waits()
    }
    fn command_env(&self) -> Vec<(String, String)> {
        self.backend.command_env()
    }
}

/// Where locks live: a lock directory or a cluster. The one place a backend is chosen.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use lockbydir::Place;
///
/// let place = Place::from_kind("lockdir", Path::new("/var/lock/jobs"), &[]).unwrap();
/// assert_eq!(place.lock_dir(), Some(Path::new("/var/lock/jobs")));
/// // A backend this build does not have is refused, naming those it has.
/// let err = Place::from_kind("zookeeper", Path::new("."), &[]).unwrap_err();
/// assert!(err.to_string().contains("no `zookeeper` backend"), "{err}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// Lockdirs in this directory, which must exist, served by the lock component.
    LockDir(PathBuf),
    /// An etcd cluster, by its client URLs (`http://127.0.0.1:2379`).
    #[cfg(feature = "etcd")]
    Etcd(Vec<String>),
}

/// The backends this build has, by the names [`Place::from_kind`] takes.
pub const KINDS: &[&str] = &[
    "lockdir",
    #[cfg(feature = "etcd")]
    "etcd",
];

/// What a backend may hold on a plugin's behalf.
#[derive(Debug)]
pub struct Limits {
    /// The lock component's linear memory, charged to the plugin's budget.
    pub memory: MemoryCap,
    /// How many lock handles may be open at once.
    pub lock_handles: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: MemoryCap::unlimited(),
            lock_handles: crate::limits::OTHER_HANDLES,
        }
    }
}

impl Place {
    /// The place named by a backend `kind` (one of [`KINDS`]): `lockdir` is `lock_dir`;
    /// every other kind is a cluster at `endpoints`. A kind this build does not have is an
    /// [`Error::Backend`] saying which it has and how to get the others.
    pub fn from_kind(kind: &str, lock_dir: &Path, endpoints: &[String]) -> Result<Place, Error> {
        match kind {
            "lockdir" => Ok(Place::LockDir(lock_dir.to_owned())),
            #[cfg(feature = "etcd")]
            "etcd" => Ok(Place::Etcd(endpoints.to_vec())),
            other => {
                let _ = endpoints;
                Err(Error::Backend {
                    place: other.to_owned(),
                    message: format!(
                        "this lockbydir has no `{other}` backend (it has: {}); the etcd \
                         backend is the cargo feature `etcd` (it needs protoc to build: \
                         Debian's protobuf-compiler and libprotobuf-dev)",
                        KINDS.join(", ")
                    ),
                })
            }
        }
    }

    /// The lock directory, for a place that is one.
    pub fn lock_dir(&self) -> Option<&Path> {
        match self {
            Place::LockDir(dir) => Some(dir),
            #[cfg(feature = "etcd")]
            Place::Etcd(_) => None,
        }
    }

    /// Open the backend: instantiate the lock component on the lock directory, or connect to
    /// the cluster (checking that it answers).
    pub fn open(&self, runtime: &Runtime) -> Result<Box<dyn Backend>, Error> {
        self.open_with_limits(runtime, Limits::default())
    }

    /// [`Place::open`] for a plugin: what the backend holds for it counts against `limits`.
    pub fn open_with_limits(
        &self,
        runtime: &Runtime,
        limits: Limits,
    ) -> Result<Box<dyn Backend>, Error> {
        match self {
            Place::LockDir(dir) => Ok(Box::new(LockDirBackend::with_limits(runtime, dir, limits)?)),
            #[cfg(feature = "etcd")]
            Place::Etcd(endpoints) => Ok(Box::new(etcd::EtcdBackend::connect(endpoints)?)),
        }
    }
}

/// Ends a backend's waits from another thread (a signal handler's, say): the current one,
/// and every later one at once, which then return `busy` having left the line.
pub struct Canceller(Box<dyn Fn() + Send + Sync>);

impl Canceller {
    /// A canceller that calls `cancel`.
    pub fn new(cancel: impl Fn() + Send + Sync + 'static) -> Self {
        Canceller(Box::new(cancel))
    }

    /// Cancel the waits.
    pub fn cancel(&self) {
        (self.0)()
    }
}

/// How a backend's waiters learn that a lock changed, and how their waits went.
pub struct Waits {
    /// Ends the waits from another thread.
    pub canceller: Canceller,
    /// How the waiters are woken.
    pub mode: WaitMode,
}

/// How a backend's waiters are woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// The host's change notification wakes each waiter when the one entry it waits for
    /// changes.
    Woken {
        /// Looks at an entry that came with a request to be woken.
        looks: u64,
        /// Sleeps that a change could end.
        sleeps: u64,
        /// Of those, how many a change ended.
        woken: u64,
    },
    /// The waiters poll (look again after a pause), for this reason.
    Polling {
        /// Why there are no wake-ups.
        why: Polling,
        /// Looks at the lock's state entry.
        looks: u64,
    },
    /// The lock service itself tells each waiter when its predecessor is gone (etcd's
    /// watches).
    Watched,
}
