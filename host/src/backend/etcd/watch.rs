//! The watch a waiter keeps on the key right ahead of it in line.
//!
//! etcd sends a watch its events as they are written only if the watch starts after the
//! newest revision ("synced"). A watch that starts at a revision already written, even the
//! one right after a read made a moment ago while others wrote, is caught up by a loop that
//! runs every 100 ms (`syncWatchersLoop` in etcd's mvcc package), so it learns of the
//! deletion it waits for up to 100 ms late. The watch here therefore starts at etcd's
//! current revision, and says which one that was: when the queue was written since the
//! waiter read it, the waiter reads it once more, and the watch covers everything after that
//! read.

use etcd_client::{
    Client, Error as EtcdError, EventType, KeyValue, WatchFilterType, WatchOptions, WatchStream,
};

use super::call::{CALL_BUDGET, Failed, retrying};

/// A watch on the deletion of one queue key.
pub struct Watch {
    /// The key watched, and its create revision (a key made anew is another acquisition).
    key: Vec<u8>,
    create_revision: i64,
    stream: WatchStream,
    /// etcd's revision when the watch started: it sees every change after it.
    started_at: i64,
}

/// What ended a wait on a [`Watch`].
pub enum Seen {
    /// The key was deleted; its last value, if etcd sent it.
    Deleted(Option<KeyValue>),
    /// etcd ended the watch, or its stream broke: look again.
    Ended,
}

impl Watch {
    /// Start watching `ahead`'s deletion from etcd's current revision, once etcd has said that
    /// the watch exists.
    pub async fn start(client: &Client, ahead: &KeyValue) -> Result<Watch, Failed> {
        let options = WatchOptions::new()
            .with_filters([WatchFilterType::NoPut])
            .with_prev_key();
        let ((stream, started_at), _) = retrying(CALL_BUDGET, || {
            let mut c = client.clone();
            let (key, options) = (ahead.key().to_vec(), options.clone());
            async move {
                let mut stream = c.watch(key, Some(options)).await?;
                // etcd's first answer on a new watch stream says it was created, with the
                // revision the watch starts after.
                match stream.message().await? {
                    Some(r) if r.created() && !r.canceled() => {
                        let revision = r.header().map_or(0, |h| h.revision());
                        Ok((stream, revision))
                    }
                    Some(r) => Err(EtcdError::WatchError(format!(
                        "the watch was not created: {}",
                        r.cancel_reason()
                    ))),
                    None => Err(EtcdError::WatchError(
                        "the watch stream ended before the watch was created".into(),
                    )),
                }
            }
        })
        .await?;
        Ok(Watch {
            key: ahead.key().to_vec(),
            create_revision: ahead.create_revision(),
            stream,
            started_at,
        })
    }

    /// Whether this watches `kv` (the same key, made by the same acquisition).
    pub fn is_on(&self, kv: &KeyValue) -> bool {
        kv.key() == self.key.as_slice() && kv.create_revision() == self.create_revision
    }

    /// Whether it sees every change from `revision` on (nothing was written between
    /// `revision` and the watch's start).
    pub fn sees_from(&self, revision: i64) -> bool {
        self.started_at < revision
    }

    /// Wait for the key's deletion.
    pub async fn deleted(&mut self) -> Seen {
        loop {
            match self.stream.message().await {
                Ok(Some(resp)) => {
                    let deleted = resp
                        .events()
                        .iter()
                        .find(|e| e.event_type() == EventType::Delete);
                    if let Some(event) = deleted {
                        return Seen::Deleted(event.prev_kv().cloned());
                    }
                    if resp.canceled() {
                        return Seen::Ended;
                    }
                }
                _ => return Seen::Ended,
            }
        }
    }
}
