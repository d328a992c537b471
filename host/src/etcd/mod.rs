//! The etcd backend: the `lockbydir:lock/lock` interface served by an etcd cluster (v3 API,
//! etcd 3.4 or later), for processes on several machines. The lock itself is in
//! [`queue`]; this module is its synchronous face (the host is synchronous): a small tokio
//! runtime owned by the backend, and the handles a plugin or command opened.

mod call;
pub mod keys;
mod queue;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use lockbydir_protocol::LockName;
use lockbydir_protocol::entry::kept_label;
use lockbydir_protocol::recover::Recovered;

use crate::backend::{Canceller, LockBackend, RawLock};
use crate::bindings::wit;
use crate::error::Error;
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
    options: wit::Options,
    held: Option<Held>,
}

/// Locks kept in etcd.
pub struct EtcdBackend {
    runtime: tokio::runtime::Runtime,
    client: Client,
    endpoints: Vec<String>,
    handles: BTreeMap<u64, Handle>,
    next: u64,
    cancel: Arc<Cancel>,
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
            return Err(fail("no endpoint given (--etcd-endpoints URL,...)".into()));
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
                    "cannot reach etcd: {why}; start etcd there, or pass the endpoints of a \
                     running cluster with --etcd-endpoints (or LOCKBYDIR_ETCD)"
                ))
            })?;
        Ok(EtcdBackend {
            runtime,
            client,
            endpoints: endpoints.to_vec(),
            handles: BTreeMap::new(),
            next: 1,
            cancel: Arc::new(Cancel {
                cancelled: AtomicBool::new(false),
                notify: tokio::sync::Notify::new(),
            }),
        })
    }

    fn handle(&mut self, lock: RawLock) -> wasmtime::Result<&mut Handle> {
        match lock {
            RawLock::Remote(id) => self
                .handles
                .get_mut(&id)
                .ok_or_else(|| wasmtime::Error::msg(format!("etcd lock handle {id} is not open"))),
            RawLock::Component(_) => Err(wasmtime::Error::msg(
                "a lock component handle was passed to the etcd backend",
            )),
        }
    }

    fn acquire_with(
        &mut self,
        lock: RawLock,
        wait: bool,
    ) -> wasmtime::Result<Result<wit::AcquireOutcome, wit::Error>> {
        let client = self.client.clone();
        let cancel = Arc::clone(&self.cancel);
        let h = self.handle(lock)?;
        if h.held.is_some() {
            return Ok(Err(wit::Error::AlreadyHeld));
        }
        let patience = if wait { h.options.patience_ms } else { 0 };
        let give_up = Instant::now().checked_add(Duration::from_millis(patience));
        let (name, options) = (h.name.clone(), h.options.clone());
        let r = self
            .runtime
            .block_on(queue::acquire(&client, &name, &options, give_up, &cancel));
        let h = self.handle(lock)?;
        Ok(r.map(|a| match a {
            Acquired::Held(held, grant) => {
                h.held = Some(held);
                wit::AcquireOutcome::Acquired(grant)
            }
            Acquired::Busy(holder) => wit::AcquireOutcome::Busy(holder),
        }))
    }

    /// Release what `h` holds (its record is cleared whatever the outcome).
    fn release_handle(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::ReleaseReport, wit::Error>> {
        let client = self.client.clone();
        let h = self.handle(lock)?;
        let Some(held) = h.held.take() else {
            return Ok(Err(wit::Error::NotHeld));
        };
        let name = h.name.clone();
        Ok(self.runtime.block_on(queue::release(&client, &name, &held)))
    }
}

/// `etcd URL,...`, how messages name the cluster.
fn place(endpoints: &[String]) -> String {
    format!("etcd {}", endpoints.join(","))
}

impl LockBackend for EtcdBackend {
    fn place(&self) -> String {
        place(&self.endpoints)
    }

    fn open_raw(
        &mut self,
        name: &str,
        options: &wit::Options,
    ) -> wasmtime::Result<Result<RawLock, wit::Error>> {
        if let Err(e) = LockName::new(name) {
            return Ok(Err(wit::Error::InvalidName(e.to_string())));
        }
        let checked = lockbydir_protocol::Options {
            timeout_ms: options.timeout_ms,
            patience_ms: options.patience_ms,
            min_poll_ms: options.min_poll_ms,
            max_poll_ms: options.max_poll_ms,
            max_clock_skew_ms: options.max_clock_skew_ms,
            ..lockbydir_protocol::Options::default()
        };
        if let Err(lockbydir_protocol::Error::InvalidOption(why)) = checked.validate() {
            return Ok(Err(wit::Error::InvalidOption(why)));
        }
        let mut options = options.clone();
        options.holder = kept_label(&options.holder).to_owned();
        let id = self.next;
        self.next += 1;
        self.handles.insert(
            id,
            Handle {
                name: name.to_owned(),
                options,
                held: None,
            },
        );
        Ok(Ok(RawLock::Remote(id)))
    }

    fn drop_raw(&mut self, lock: RawLock) -> wasmtime::Result<()> {
        // As the lock component's destructor: a handle that holds its lock releases it.
        if self.handle(lock)?.held.is_some() {
            let _ = self.release_handle(lock)?;
        }
        if let RawLock::Remote(id) = lock {
            self.handles.remove(&id);
        }
        Ok(())
    }

    fn acquire_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::AcquireOutcome, wit::Error>> {
        self.acquire_with(lock, true)
    }

    fn try_acquire_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::AcquireOutcome, wit::Error>> {
        self.acquire_with(lock, false)
    }

    fn refresh_raw(&mut self, lock: RawLock) -> wasmtime::Result<Result<u64, wit::Error>> {
        let client = self.client.clone();
        let h = self.handle(lock)?;
        let name = h.name.clone();
        let Some(held) = h.held.as_mut() else {
            return Ok(Err(wit::Error::NotHeld));
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
        Ok(r)
    }

    fn release_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::ReleaseReport, wit::Error>> {
        self.release_handle(lock)
    }

    fn inspect_raw(
        &mut self,
        lock: RawLock,
    ) -> wasmtime::Result<Result<wit::LockState, wit::Error>> {
        let client = self.client.clone();
        let name = self.handle(lock)?.name.clone();
        Ok(self.runtime.block_on(queue::inspect(&client, &name)))
    }

    fn fence_raw(&mut self, lock: RawLock) -> wasmtime::Result<Option<u64>> {
        Ok(self.handle(lock)?.held.as_ref().map(|h| h.fence))
    }

    fn list_locks_raw(&mut self) -> wasmtime::Result<Result<Vec<wit::LockStatus>, wit::Error>> {
        Ok(self.runtime.block_on(queue::list_locks(&self.client)))
    }

    fn now_ms_raw(&mut self) -> wasmtime::Result<u64> {
        Ok(queue::now_ms())
    }

    fn describe_waits(&self) -> String {
        "waits: each waiter watches its predecessor's key in etcd (woken by etcd, no polling)"
            .into()
    }

    fn queue_raw(&mut self, name: &str) -> wasmtime::Result<Result<wit::QueueStatus, wit::Error>> {
        if let Err(e) = LockName::new(name) {
            return Ok(Err(wit::Error::InvalidName(e.to_string())));
        }
        Ok(self
            .runtime
            .block_on(queue::queue_status(&self.client, name)))
    }

    fn lock_names(&mut self) -> Result<Vec<String>, wit::Error> {
        self.runtime.block_on(queue::lock_names(&self.client))
    }

    fn lock_exists(&mut self, name: &str) -> bool {
        // Unknown (etcd unreachable): counted as new, which errs on the safe side.
        self.runtime
            .block_on(queue::exists(&self.client, name))
            .unwrap_or(false)
    }

    fn release_by_fence(&mut self, name: &str, fence: u64) -> Result<Recovered, String> {
        // Every handle that holds its lock is in this backend: release that one.
        let found = self
            .handles
            .iter()
            .find(|(_, h)| {
                h.name == name && h.held.as_ref().is_some_and(|held| held.fence == fence)
            })
            .map(|(id, _)| *id);
        let Some(id) = found else {
            return Ok(Recovered::NotHeld);
        };
        match self.release_handle(RawLock::Remote(id)) {
            Ok(Ok(_)) => Ok(Recovered::Released),
            Ok(Err(wit::Error::Compromised(_))) => Ok(Recovered::NotHeld),
            Ok(Err(e)) => Err(crate::error::describe(&e)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn wake_waiters(&self) {
        // Waiters in etcd are woken by their watches.
    }

    fn canceller(&self) -> Canceller {
        let cancel = Arc::clone(&self.cancel);
        Canceller::new(move || cancel.cancel())
    }

    fn is_remote(&self) -> bool {
        true
    }
}

impl Drop for EtcdBackend {
    /// Handles still holding their locks release them (as dropping a lock handle does).
    fn drop(&mut self) {
        let held: Vec<u64> = self
            .handles
            .iter()
            .filter(|(_, h)| h.held.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            let _ = self.release_handle(RawLock::Remote(id));
        }
    }
}
