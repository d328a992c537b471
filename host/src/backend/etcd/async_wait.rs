//! An etcd wait that holds no thread: the queue's wait (`queue::acquire`, which sleeps on
//! etcd's watch of the key ahead) as a task of the backend's runtime, awaited by the caller.
//! Dropped before it is done, it cancels the task, which leaves the line; a grant that came
//! meanwhile is released.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::Client;

use super::Cancel;
use super::queue::{self, Acquired, Held};
use crate::backend::AsyncWait;
use crate::bindings::types as wit;
use crate::error::Error;

/// Where an async wait leaves what it was granted, for the handle's next use.
#[derive(Clone, Default)]
pub(super) struct Granted(Arc<Mutex<Option<Held>>>);

impl Granted {
    fn put(&self, held: Held) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(held);
    }

    /// What was granted, if anything, and not taken yet.
    pub(super) fn take(&self) -> Option<Held> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The tasks of dropped waits that are still leaving the line.
#[derive(Clone, Default)]
pub(super) struct Leaving(Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Leaving {
    fn push(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Every task still leaving (to await).
    pub(super) fn take(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A wait about to start.
pub(super) struct EtcdWait {
    pub(super) client: Client,
    pub(super) place: String,
    pub(super) name: String,
    pub(super) options: lockbydir_protocol::Options,
    pub(super) granted: Granted,
    pub(super) leaving: Leaving,
}

/// Cancels the wait's task if dropped before the wait is over, and gives back what it was
/// granted meanwhile.
struct CancelOnDrop {
    cancel: Arc<Cancel>,
    task: Option<tokio::task::JoinHandle<Result<Acquired, wit::Error>>>,
    client: Client,
    name: String,
    granted: Granted,
    leaving: Leaving,
    runtime: tokio::runtime::Handle,
}

impl CancelOnDrop {
    /// The wait is over: nothing to cancel.
    fn disarm(&mut self) {
        self.task = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        self.cancel.cancel();
        let (client, name, granted) =
            (self.client.clone(), self.name.clone(), self.granted.clone());
        let leaving = self.runtime.spawn(async move {
            let _ = task.await;
            if let Some(held) = granted.take() {
                let _ = queue::release(&client, &name, &held).await;
            }
        });
        self.leaving.push(leaving);
    }
}

impl EtcdWait {
    /// Start the wait on `runtime`.
    pub(super) fn start(self, runtime: &tokio::runtime::Handle) -> AsyncWait {
        let cancel = Arc::new(Cancel {
            cancelled: Default::default(),
            notify: tokio::sync::Notify::new(),
        });
        let give_up = Instant::now().checked_add(Duration::from_millis(self.options.patience_ms));
        let task = {
            let (client, name, options) = (self.client.clone(), self.name.clone(), self.options);
            let (cancel, granted) = (Arc::clone(&cancel), self.granted.clone());
            runtime.spawn(async move {
                let acquired =
                    queue::acquire(&client, &name, &options, give_up, &cancel, None).await?;
                if let Acquired::Held(held, _) = &acquired {
                    granted.put(held.clone());
                }
                Ok(acquired)
            })
        };
        let mut guard = CancelOnDrop {
            cancel,
            task: Some(task),
            client: self.client,
            name: self.name.clone(),
            granted: self.granted,
            leaving: self.leaving,
            runtime: runtime.clone(),
        };
        let (name, place) = (self.name, self.place);
        AsyncWait::new(async move {
            let task = guard
                .task
                .as_mut()
                .expect("the task is there until the wait ends");
            let joined = task.await;
            guard.disarm();
            let value = |error| Error::Lock {
                lock: name.clone(),
                place: place.clone(),
                error,
            };
            match joined {
                Ok(Ok(Acquired::Held(_, grant))) => Ok(wit::AcquireOutcome::Acquired(grant)),
                Ok(Ok(Acquired::Busy(holder))) => Ok(wit::AcquireOutcome::Busy(holder)),
                Ok(Err(error)) => Err(value(error)),
                Err(join) => Err(Error::Trap {
                    doing: format!("waiting for lock `{name}`"),
                    reason: wasmtime::Error::msg(format!("the wait's task failed: {join}")),
                }),
            }
        })
    }
}
