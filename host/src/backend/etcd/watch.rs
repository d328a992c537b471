//! The watch a waiter keeps on the key right ahead of it in line.
//!
//! etcd sends a watch its events as they are written only if the watch is "synced": it
//! starts after the newest revision. A watch that starts at a revision already written, even
//! the one right after a read made a moment ago while others wrote, is caught up by a loop
//! that runs every 100 ms (`syncWatchersLoop` in etcd's mvcc package), so it learns of the
//! deletion it waits for up to 100 ms late. The watch here therefore starts at etcd's
//! current revision, and says which one that was: when the queue was written since the
//! waiter read it, the waiter reads it once more, and the watch covers everything after that
//! read.
//!
//! etcd (3.4 and later) reads its current revision before it registers a new watch: a write
//! that commits in between files even a watch from "now" as behind. Under steady writes that
//! happened to about 2 % of the watches (traced with 8 looping processes). So the key is
//! watched twice on one stream, the second watch registered one round trip after the first:
//! both are late only if a write lands in both moments.
use etcd_client::{
    Client, Error as EtcdError, EventType, KeyValue, WatchFilterType, WatchOptions, WatchResponse,
    WatchStream,
};

use super::call::{CALL_BUDGET, Failed, retrying};

/// A watch on the deletion of one queue key (two watchers on one stream).
pub struct Watch {
    /// The key watched, and its create revision (a key made anew is another acquisition).
    key: Vec<u8>,
    create_revision: i64,
    stream: WatchStream,
    /// etcd's revision when the second watcher started: together they see every change
    /// after it.
    started_at: i64,
    /// A deletion that came while the second watcher was being made.
    seen: Option<Seen>,
}

/// What ended a wait on a [`Watch`].
pub enum Seen {
    /// The key was deleted; its last value, if etcd sent it.
    Deleted(Option<KeyValue>),
    /// etcd ended the watch, or its stream broke: look again.
    Ended,
}

/// What one answer on a watch stream says about the key.
fn seen_in(resp: &WatchResponse) -> Option<Seen> {
    let deleted = resp
        .events()
        .iter()
        .find(|e| e.event_type() == EventType::Delete);
    match deleted {
        Some(event) => Some(Seen::Deleted(event.prev_kv().cloned())),
        None if resp.canceled() => Some(Seen::Ended),
        None => None,
    }
}

/// Read `stream` until etcd says a new watcher was created: the revision it starts after,
/// and a deletion or end seen before that.
async fn created(stream: &mut WatchStream) -> Result<(i64, Option<Seen>), EtcdError> {
    let mut seen = None;
    loop {
        match stream.message().await? {
            Some(r) if r.created() && !r.canceled() => {
                return Ok((r.header().map_or(0, |h| h.revision()), seen));
            }
            Some(r) if r.created() => {
                return Err(EtcdError::WatchError(format!(
                    "the watch was not created: {}",
                    r.cancel_reason()
                )));
            }
            Some(r) => seen = seen.or(seen_in(&r)),
            None => {
                return Err(EtcdError::WatchError(
                    "the watch stream ended before the watch was created".into(),
                ));
            }
        }
    }
}

impl Watch {
    /// Start watching `ahead`'s deletion from etcd's current revision, once etcd has said that
    /// both watchers exist.
    pub async fn start(client: &Client, ahead: &KeyValue) -> Result<Watch, Failed> {
        let options = WatchOptions::new()
            .with_filters([WatchFilterType::NoPut])
            .with_prev_key();
        let ((stream, started_at, seen), _) = retrying(CALL_BUDGET, || {
            let mut c = client.clone();
            let (key, options) = (ahead.key().to_vec(), options.clone());
            async move {
                let mut stream = c.watch(key.clone(), Some(options.clone())).await?;
                let (_, seen) = created(&mut stream).await?;
                stream.watch(key, Some(options)).await?;
                let (started_at, seen_later) = created(&mut stream).await?;
                Ok((stream, started_at, seen.or(seen_later)))
            }
        })
        .await?;
        Ok(Watch {
            key: ahead.key().to_vec(),
            create_revision: ahead.create_revision(),
            stream,
            started_at,
            seen,
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
        if let Some(seen) = self.seen.take() {
            return seen;
        }
        loop {
            match self.stream.message().await {
                Ok(Some(resp)) => {
                    if let Some(seen) = seen_in(&resp) {
                        return seen;
                    }
                }
                _ => return Seen::Ended,
            }
        }
    }
}
