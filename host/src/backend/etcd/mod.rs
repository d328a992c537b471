//! The etcd backend: the `lockbydir:lock/lock` interface served by an etcd cluster (v3 API,
//! etcd 3.4 or later), for processes on several machines. The lock itself is in `queue`;
//! this module is its synchronous face: a small tokio runtime owned by the backend, and the
//! handles a plugin or command opened.

mod async_wait;
mod call;
pub mod keys;
mod queue;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use lockbydir_protocol::LockName;
use lockbydir_protocol::entry::kept_label;

use super::{Backend, Canceller, WaitMode, Waits};
use crate::bindings::types as wit;
use crate::error::Error;
use crate::handle::LockId;
use queue::{Acquired, Held};

/// How long connecting to etcd and its first answer may take at start.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends waits from another thread: the current one, and every later one at once.
pub struct Cancel {
    cancelled: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// One open handle.
struct Handle {
    name: String,
    /// Its options, every default filled in.
    options: lockbydir_protocol::Options,
    held: Option<Held>,
    /// What an async wait on this handle was granted (taken into `held` at the handle's next
    /// use; see `async_wait`).
    granted: async_wait::Granted,
    /// The place in line a busy try kept for an acquire that follows (see
    /// [`KEPT_PLACE_GRACE`]).
    kept: Option<Kept>,
}

/// A place in line kept by a busy try: claimed by the next acquire on the handle, or given
/// up by a task after [`KEPT_PLACE_GRACE`], whichever sets `claimed` first.
struct Kept {
    place: queue::Place,
    claimed: Arc<AtomicBool>,
}

/// How long a try that found the lock busy keeps its place in line for an acquire of the
/// same handle (a handle that may wait: its patience is not zero), so that trying and then
/// waiting (as `lockbydir exec` does, to say that it waits) enqueues once. A place not
/// claimed by then is given up; until then, if it comes to the head of the line, the lock
/// waits for it.
const KEPT_PLACE_GRACE: Duration = Duration::from_millis(100);

/// Locks kept in etcd.
pub struct EtcdBackend {
    runtime: tokio::runtime::Runtime,
    client: Client,
    endpoints: Vec<String>,
    /// `etcd URL,...`, how messages name the cluster.
    place: String,
    handles: BTreeMap<LockId, Handle>,
    next: u64,
    cancel: Arc<Cancel>,
    /// Dropped async waits still leaving the line: awaited before the next call, so that what
    /// the caller sees next no longer has them.
    leaving: async_wait::Leaving,
}

impl EtcdBackend {
    /// Connect to the etcd cluster at `endpoints` (URLs like `http://127.0.0.1:2379`) and
    /// check that it answers; an etcd that does not gives [`Error::Backend`] naming them.
    pub fn connect(endpoints: &[String]) -> Result<Self, Error> {
        let place = place(endpoints);
        let fail = |message: String| Error::Backend {
            place: place.clone(),
            message,
        };
        if endpoints.is_empty() {
            return Err(fail("no endpoint given".into()));
        }
        // One worker thread: the keepalives and connection upkeep run while the host thread
        // waits for an answer.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lockbydir-etcd")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start its client runtime: {e}")))?;
        let options = ConnectOptions::new()
            .with_connect_timeout(call::REQUEST_TIMEOUT)
            .with_timeout(call::REQUEST_TIMEOUT)
            // HTTP/2 pings on open streams: a watch on a member that stopped answering breaks
            // within seconds instead of waiting forever.
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            // A member cut off from the leader fails calls (and watches) instead of serving
            // stale reads: they are retried on another member.
            .with_require_leader(true);
        let client = runtime
            .block_on(async {
                let client =
                    tokio::time::timeout(START_TIMEOUT, Client::connect(endpoints, Some(options)))
                        .await
                        .map_err(|_| "no connection within 5 s".to_owned())?
                        .map_err(|e| call::describe(&e))?;
                let (_, _) = call::retrying(START_TIMEOUT, || {
                    let mut c = client.clone();
                    async move { c.get(keys::ROOT, None).await }
                })
                .await
                .map_err(|f| f.message)?;
                Ok::<_, String>(client)
            })
            .map_err(|why| {
                fail(format!(
                    "cannot reach etcd: {why}; start etcd there, or give the endpoints of a \
                     running cluster"
                ))
            })?;
        Ok(EtcdBackend {
            runtime,
            client,
            endpoints: endpoints.to_vec(),
            place: place.clone(),
            handles: BTreeMap::new(),
            next: 1,
            leaving: Default::default(),
            cancel: Arc::new(Cancel {
                cancelled: AtomicBool::new(false),
                notify: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Wait until the dropped async waits have left the line.
    fn settle(&mut self) {
        let leaving = self.leaving.take();
        if !leaving.is_empty() {
            self.runtime.block_on(async {
                for task in leaving {
                    let _ = task.await;
                }
            });
        }
    }

    fn handle(&mut self, lock: LockId) -> Result<&mut Handle, Error> {
        self.settle();
        let h = self.handles.get_mut(&lock).ok_or_else(|| Error::Trap {
            doing: format!("using lock handle {}", lock.0),
            reason: wasmtime::Error::msg("no such handle is open in this etcd backend"),
        })?;
        if let Some(held) = h.granted.take() {
            h.held = Some(held);
        }
        Ok(h)
    }

    /// `error`, a value of the interface about lock `name`, in the host's terms.
    fn value(&self, name: &str, error: wit::Error) -> Error {
        Error::Lock {
            lock: name.to_owned(),
            place: self.place.clone(),
            error,
        }
    }

    fn acquire_with(&mut self, lock: LockId, wait: bool) -> Result<wit::AcquireOutcome, Error> {
        let client = self.client.clone();
        let cancel = Arc::clone(&self.cancel);
        let h = self.handle(lock)?;
        let name = h.name.clone();
        if h.held.is_some() {
            return Err(self.value(&name, wit::Error::AlreadyHeld));
        }
        let patience = if wait { h.options.patience_ms } else { 0 };
        let give_up = Instant::now().checked_add(Duration::from_millis(patience));
        let options = h.options.clone();
        // A place a try kept for this wait, unless it was given up already.
        let kept = h
            .kept
            .take()
            .filter(|k| !k.claimed.swap(true, Ordering::SeqCst))
            .map(|k| k.place);
        if !wait && options.patience_ms > 0 {
            return self.try_keeping_place(lock, &name, &options, kept);
        }
        let r = self.runtime.block_on(queue::acquire(
            &client, &name, &options, give_up, &cancel, kept,
        ));
        let acquired = r.map_err(|e| self.value(&name, e))?;
        let h = self.handle(lock)?;
        Ok(match acquired {
            Acquired::Held(held, grant) => {
                h.held = Some(held);
                wit::AcquireOutcome::Acquired(grant)
            }
            Acquired::Busy(holder) => wit::AcquireOutcome::Busy(holder),
        })
    }

    /// Release what the handle holds (its record is cleared whatever the outcome).
    /// A try on a handle that may wait: if the lock is busy, its place in line is kept for
    /// [`KEPT_PLACE_GRACE`] (an earlier kept place, `kept`, is given up first).
    fn try_keeping_place(
        &mut self,
        lock: LockId,
        name: &str,
        options: &lockbydir_protocol::Options,
        kept: Option<queue::Place>,
    ) -> Result<wit::AcquireOutcome, Error> {
        let client = self.client.clone();
        let r = self.runtime.block_on(async {
            if let Some(place) = &kept {
                queue::leave(&client, place).await?;
            }
            queue::try_keeping_place(&client, name, options).await
        });
        let tried = r.map_err(|e| self.value(name, e))?;
        let h = self.handle(lock)?;
        Ok(match tried {
            Ok((held, grant)) => {
                h.held = Some(held);
                wit::AcquireOutcome::Acquired(grant)
            }
            Err(place) => {
                let holder = place.holder.clone();
                let claimed = Arc::new(AtomicBool::new(false));
                h.kept = Some(Kept {
                    place: place.clone(),
                    claimed: Arc::clone(&claimed),
                });
                self.runtime.spawn(async move {
                    tokio::time::sleep(KEPT_PLACE_GRACE).await;
                    if !claimed.swap(true, Ordering::SeqCst) {
                        let _ = queue::leave(&client, &place).await;
                    }
                });
                wit::AcquireOutcome::Busy(holder)
            }
        })
    }

    /// Give up the place a try kept on handle `lock`, if any.
    fn leave_kept(&mut self, lock: LockId) -> Result<(), Error> {
        let client = self.client.clone();
        let Some(kept) = self.handle(lock)?.kept.take() else {
            return Ok(());
        };
        if !kept.claimed.swap(true, Ordering::SeqCst) {
            let _ = self.runtime.block_on(queue::leave(&client, &kept.place));
        }
        Ok(())
    }

    fn release_handle(&mut self, lock: LockId) -> Result<wit::ReleaseReport, Error> {
        let client = self.client.clone();
        let h = self.handle(lock)?;
        let name = h.name.clone();
        let Some(held) = h.held.take() else {
            return Err(self.value(&name, wit::Error::NotHeld));
        };
        let released = self.runtime.block_on(queue::release(&client, &name, &held));
        released.map_err(|e| self.value(&name, e))
    }
}

/// `etcd URL,...`, how messages name the cluster.
fn place(endpoints: &[String]) -> String {
    format!("etcd {}", endpoints.join(","))
}

impl Backend for EtcdBackend {
    fn place(&self) -> &str {
        &self.place
    }

    fn open(&mut self, name: &str, options: &wit::Options) -> Result<LockId, Error> {
        if let Err(e) = LockName::new(name) {
            return Err(self.value(name, wit::Error::InvalidName(e.to_string())));
        }
        let mut options = options.to_protocol();
        if let Err(lockbydir_protocol::Error::InvalidOption(why)) = options.validate() {
            return Err(self.value(name, wit::Error::InvalidOption(why)));
        }
        options.holder = kept_label(&options.holder).to_owned();
        let id = LockId(self.next);
        self.next += 1;
        self.handles.insert(
            id,
            Handle {
                name: name.to_owned(),
                options,
                held: None,
                granted: Default::default(),
                kept: None,
            },
        );
        Ok(id)
    }

    fn close(&mut self, lock: LockId) -> Result<(), Error> {
        self.leave_kept(lock)?;
        // As the lock component's destructor: a handle that holds its lock releases it.
        if self.handle(lock)?.held.is_some() {
            let _ = self.release_handle(lock);
        }
        self.handles.remove(&lock);
        Ok(())
    }

    fn acquire(&mut self, lock: LockId) -> Result<wit::AcquireOutcome, Error> {
        self.acquire_with(lock, true)
    }

    fn try_acquire(&mut self, lock: LockId) -> Result<wit::AcquireOutcome, Error> {
        self.acquire_with(lock, false)
    }

    fn wait_async(&mut self, lock: LockId) -> Result<super::AsyncWait, Error> {
        self.leave_kept(lock)?;
        let (client, place) = (self.client.clone(), self.place.clone());
        let runtime = self.runtime.handle().clone();
        let h = self.handle(lock)?;
        if h.held.is_some() {
            let name = h.name.clone();
            return Err(self.value(&name, wit::Error::AlreadyHeld));
        }
        let wait = async_wait::EtcdWait {
            client,
            place,
            name: h.name.clone(),
            options: h.options.clone(),
            granted: h.granted.clone(),
            leaving: self.leaving.clone(),
        };
        Ok(wait.start(&runtime))
    }

    fn refresh(&mut self, lock: LockId) -> Result<u64, Error> {
        let client = self.client.clone();
        let h = self.handle(lock)?;
        let name = h.name.clone();
        let Some(held) = h.held.as_mut() else {
            return Err(self.value(&name, wit::Error::NotHeld));
        };
        let mut held_now = held.clone();
        let r = self
            .runtime
            .block_on(queue::refresh(&client, &name, &mut held_now));
        let h = self.handle(lock)?;
        match &r {
            Ok(_) => h.held = Some(held_now),
            Err(wit::Error::Compromised(_)) => h.held = None,
            Err(_) => {}
        }
        r.map_err(|e| self.value(&name, e))
    }

    fn release(&mut self, lock: LockId) -> Result<wit::ReleaseReport, Error> {
        self.release_handle(lock)
    }

    fn inspect(&mut self, lock: LockId) -> Result<wit::LockState, Error> {
        let client = self.client.clone();
        let name = self.handle(lock)?.name.clone();
        let state = self.runtime.block_on(queue::inspect(&client, &name));
        state.map_err(|e| self.value(&name, e))
    }

    fn fence(&mut self, lock: LockId) -> Result<Option<u64>, Error> {
        Ok(self.handle(lock)?.held.as_ref().map(|h| h.fence))
    }

    fn list_locks(&mut self) -> Result<Vec<wit::LockStatus>, Error> {
        self.settle();
        let listed = self.runtime.block_on(queue::list_locks(&self.client));
        listed.map_err(|e| self.value("*", e))
    }

    fn now_ms(&mut self) -> Result<u64, Error> {
        Ok(queue::now_ms())
    }

    fn queue(&mut self, name: &str) -> Result<wit::QueueStatus, Error> {
        self.settle();
        if let Err(e) = LockName::new(name) {
            return Err(self.value(name, wit::Error::InvalidName(e.to_string())));
        }
        let status = self
            .runtime
            .block_on(queue::queue_status(&self.client, name));
        status.map_err(|e| self.value(name, e))
    }

    fn lock_names(&mut self) -> Result<Vec<String>, Error> {
        self.settle();
        let names = self.runtime.block_on(queue::lock_names(&self.client));
        names.map_err(|e| self.value("*", e))
    }

    fn lock_exists(&mut self, name: &str) -> Result<bool, Error> {
        self.settle();
        let exists = self.runtime.block_on(queue::exists(&self.client, name));
        exists.map_err(|e| self.value(name, e))
    }

    fn release_by_fence(&mut self, name: &str, fence: u64) -> Result<bool, Error> {
        self.settle();
        // Every handle that holds its lock is in this backend: release that one.
        let found = self
            .handles
            .iter()
            .find(|(_, h)| {
                h.name == name && h.held.as_ref().is_some_and(|held| held.fence == fence)
            })
            .map(|(id, _)| *id);
        let Some(id) = found else {
            return Ok(false);
        };
        match self.release_handle(id) {
            Ok(_) => Ok(true),
            Err(Error::Lock {
                error: wit::Error::Compromised(_),
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn waits(&self) -> Waits {
        let cancel = Arc::clone(&self.cancel);
        Waits {
            canceller: Canceller::new(move || cancel.cancel()),
            mode: WaitMode::Watched,
        }
    }

    fn command_env(&self) -> Vec<(String, String)> {
        vec![("LOCKBYDIR_ETCD".into(), self.endpoints.join(","))]
    }
}

impl Drop for EtcdBackend {
    /// Handles still holding their locks release them (as dropping a lock handle does).
    fn drop(&mut self) {
        let held: Vec<LockId> = self
            .handles
            .iter()
            .filter(|(_, h)| h.held.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            let _ = self.release_handle(id);
        }
    }
}
