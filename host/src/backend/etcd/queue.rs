//! The lock on etcd: a FIFO queue of keys ordered by create revision, as etcd's own
//! `concurrency.Mutex` builds it from lease + txn + watch.
//!
//! - Acquiring grants a lease (TTL: the timeout rounded up to whole seconds, at least 2 s),
//!   then, in one transaction, puts the acquisition's key with that lease and reads the
//!   lowest key of the queue: the holder. If that is the new key, the lock is held; its fence
//!   is the key's create revision, strictly increasing across the whole cluster.
//! - A waiter watches only its predecessor's deletion; no herd, no polling. The watch starts
//!   at etcd's current revision (one that starts at a past revision is delivered late, see
//!   [`super::watch`]); if the queue was written since the waiter read it, it reads it once
//!   more, so that a deletion in between is not missed. Its lease is kept alive while it
//!   waits (a waiter that is paused past it loses its place and enqueues anew).
//! - The holder's deadline is its own clock's time at the start of the round trip that made
//!   or renewed its lease, plus its exact timeout: never later than the server's lease ends.
//!   Refresh is a keepalive plus a transaction that checks the key is still this one.
//! - Compromised: the key is gone (its lease expired, the holder was paused past it) or is
//!   another acquisition's. Release deletes the key only if it is still this acquisition's.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, Error as EtcdError, GetOptions, KeyValue, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::Cancel;
use super::call::{CALL_BUDGET, Failed, retrying};
use super::keys::{self, Record};
use super::watch::{Seen, Watch};
use crate::bindings::types as wit;

/// Result of a lock operation: the interface's own error values.
pub type Res<T> = Result<T, wit::Error>;

/// An acquisition that holds its lock.
#[derive(Clone, Debug)]
pub struct Held {
    /// Its queue key.
    pub key: String,
    /// Its lease.
    pub lease: i64,
    /// Its fence: the key's create revision.
    pub fence: u64,
    /// What its key says (with its own deadline).
    pub record: Record,
}

/// The error value of an etcd request that failed (after its retries): the service did
/// not answer.
fn io(operation: &str, key: &str, f: Failed) -> wit::Error {
    wit::Error::Unavailable(format!("etcd {operation} `{key}` failed: {}", f.message))
}

/// Milliseconds since the epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn revision(kv: &KeyValue) -> u64 {
    u64::try_from(kv.create_revision()).unwrap_or(0)
}

/// What a queue key says about its acquisition, as the interface reports a holder.
pub fn holder_info(kv: &KeyValue) -> wit::HolderInfo {
    let r = Record::decode(kv.value());
    wit::HolderInfo {
        holder: r.holder,
        fence: revision(kv),
        since_ms: r.since_ms,
        deadline_ms: r.deadline_ms,
        lease_ms: r.timeout_ms,
    }
}

/// The lowest key of `name`'s queue: its holder.
fn owner_op(name: &str) -> TxnOp {
    TxnOp::get(
        keys::queue(name),
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1),
        ),
    )
}

/// The key-values of the `i`th operation of a transaction's answer.
fn kvs(resp: &TxnResponse, i: usize) -> Vec<KeyValue> {
    match resp.op_responses().into_iter().nth(i) {
        Some(TxnOpResponse::Get(g)) => g.kvs().to_vec(),
        _ => Vec::new(),
    }
}

fn header_revision(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

async fn txn(client: &Client, what: &str, key: &str, t: Txn) -> Res<(TxnResponse, bool)> {
    retrying(CALL_BUDGET, || {
        let mut c = client.clone();
        let t = t.clone();
        async move { c.txn(t).await }
    })
    .await
    .map_err(|f| io(what, key, f))
}

/// One keepalive round trip on a fresh stream (so a broken stream never lingers): whether the
/// lease is still alive.
pub async fn keep_alive(client: &Client, lease: i64, key: &str) -> Res<bool> {
    let (alive, _) = retrying(CALL_BUDGET, || {
        let mut c = client.clone();
        async move {
            match c.lease_keep_alive(lease).await {
                Ok(_) => Ok(true),
                Err(EtcdError::LeaseKeepAliveError(m)) if m == "lease not found" => Ok(false),
                Err(e) => Err(e),
            }
        }
    })
    .await
    .map_err(|f| io("lease-keepalive", key, f))?;
    Ok(alive)
}

/// Give a lease up, deleting its key: a waiter that leaves must not stay in line.
pub async fn revoke(client: &Client, lease: i64, key: &str) -> Res<()> {
    retrying(CALL_BUDGET, || {
        let mut c = client.clone();
        async move {
            match c.lease_revoke(lease).await {
                Ok(_) => Ok(()),
                // Already gone (expired, or an earlier attempt revoked it).
                Err(EtcdError::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }
    })
    .await
    .map(|_| ())
    .map_err(|f| io("lease-revoke", key, f))
}

/// The holder of lock `name` now, if any.
pub async fn owner(client: &Client, name: &str) -> Res<Option<wit::HolderInfo>> {
    let prefix = keys::queue(name);
    let (resp, _) = txn(
        client,
        "range",
        &prefix,
        Txn::new().and_then([owner_op(name)]),
    )
    .await?;
    Ok(kvs(&resp, 0).first().map(holder_info))
}

/// How an attempt to take the lock ended.
pub enum Acquired {
    /// Held.
    Held(Held, wit::Grant),
    /// Not held: the holder seen last.
    Busy(Option<wit::HolderInfo>),
}

/// Take lock `name`, waiting until `give_up` (`None`: forever; already past: one attempt).
/// With `kept`, a place in line that an earlier try kept (see [`Place`]): the wait goes on
/// from there instead of enqueueing anew.
pub async fn acquire(
    client: &Client,
    name: &str,
    options: &lockbydir_protocol::Options,
    give_up: Option<Instant>,
    cancel: &Cancel,
    mut kept: Option<Place>,
) -> Res<Acquired> {
    loop {
        let place = match kept.take() {
            Some(place) => place,
            None => match enqueue(client, name, options).await? {
                Enqueued::Held(held, grant) => return Ok(Acquired::Held(held, grant)),
                Enqueued::Waiting(place) => place,
                // The lease ended meanwhile: enqueue anew.
                Enqueued::Lost => continue,
            },
        };
        if give_up.is_some_and(|at| at <= Instant::now()) || cancel.is_cancelled() {
            let holder = place.holder.clone();
            leave(client, &place).await?;
            return Ok(Acquired::Busy(holder));
        }
        match wait(client, name, options, give_up, cancel, place).await? {
            Some(done) => return Ok(done),
            // The lease ended while waiting (paused past it): enqueue anew, at the back.
            None => continue,
        }
    }
}

/// One attempt that does not wait, keeping its place in line if the lock is busy: the
/// caller either goes on waiting from it ([`acquire`] with `kept`) or gives it up
/// ([`leave`]). So a contended acquisition that tries first enqueues once.
pub async fn try_keeping_place(
    client: &Client,
    name: &str,
    options: &lockbydir_protocol::Options,
) -> Res<Result<(Held, wit::Grant), Place>> {
    loop {
        match enqueue(client, name, options).await? {
            Enqueued::Held(held, grant) => return Ok(Ok((held, grant))),
            Enqueued::Waiting(place) => return Ok(Err(place)),
            Enqueued::Lost => continue,
        }
    }
}

/// Give up a place in line: revoke its lease, which deletes its key.
pub async fn leave(client: &Client, place: &Place) -> Res<()> {
    revoke(client, place.lease, &place.key).await
}

/// An enqueued acquisition that does not hold the lock yet.
#[derive(Clone, Debug)]
pub struct Place {
    /// Its queue key.
    key: String,
    /// Its lease.
    lease: i64,
    /// Its key's create revision.
    mine: i64,
    /// What its key says.
    record: Record,
    /// Its lease's TTL (s).
    ttl: i64,
    /// The key right ahead of it, as last read, if known; `None`: read it (or find the lock
    /// ours) at the next look.
    ahead: Option<KeyValue>,
    /// The revision after that read: a watch must see every change from there on, so that
    /// no deletion is missed.
    watch_from: i64,
    /// The holder seen last.
    pub holder: Option<wit::HolderInfo>,
}

/// How an enqueue ended.
enum Enqueued {
    Held(Held, wit::Grant),
    Waiting(Place),
    /// The lease ended before the key was read back (a retried request): enqueue anew.
    Lost,
}

/// The key right ahead of revision `mine` in `prefix`'s queue (the newest older one).
fn ahead_op(prefix: &str, mine: i64) -> TxnOp {
    TxnOp::get(
        prefix,
        Some(
            GetOptions::new()
                .with_prefix()
                .with_max_create_revision(mine - 1)
                .with_sort(SortTarget::Create, SortOrder::Descend)
                .with_limit(1),
        ),
    )
}

/// Grant a lease and put the acquisition's key with it, reading in the same round trip the
/// holder and the key right ahead.
async fn enqueue(
    client: &Client,
    name: &str,
    options: &lockbydir_protocol::Options,
) -> Res<Enqueued> {
    let prefix = keys::queue(name);
    let ttl = keys::lease_ttl_s(options.timeout_ms);
    // The holder's deadline counts from before the lease exists, so it ends no later.
    let started_ms = now_ms();
    let (grant, _) = retrying(CALL_BUDGET, || {
        let mut c = client.clone();
        async move { c.lease_grant(ttl, None).await }
    })
    .await
    .map_err(|f| io("lease-grant", &prefix, f))?;
    let lease = grant.id();
    let key = keys::waiter(name, lease);
    let record = Record {
        holder: options.holder.clone(),
        since_ms: started_ms,
        deadline_ms: started_ms.saturating_add(options.timeout_ms),
        timeout_ms: options.timeout_ms,
    };
    // Put the key unless an earlier attempt of this same request already did (a retry after
    // a lost answer), and read the holder and the newest two keys (ours, and the one right
    // ahead of it), in one round trip.
    let newest_two = TxnOp::get(
        prefix.clone(),
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Descend)
                .with_limit(2),
        ),
    );
    let enqueue = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.clone(),
                record.encode(),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(keys::marker(name), Vec::new(), None),
            owner_op(name),
            newest_two,
        ])
        .or_else([TxnOp::get(key.clone(), None), owner_op(name)]);
    let (resp, _) = txn(client, "txn", &key, enqueue).await?;
    let (mine, owner, ahead) = if resp.succeeded() {
        let newest = kvs(&resp, 3);
        let ahead = newest.into_iter().find(|kv| kv.key() != key.as_bytes());
        (header_revision(&resp), kvs(&resp, 2), ahead)
    } else {
        match kvs(&resp, 0).first() {
            // Read the one ahead at the first look.
            Some(kv) => (kv.create_revision(), kvs(&resp, 1), None),
            None => return Ok(Enqueued::Lost),
        }
    };
    let fence = u64::try_from(mine).unwrap_or(0);
    if owner.first().is_some_and(|kv| kv.key() == key.as_bytes()) {
        let grant = wit::Grant {
            fence,
            deadline_ms: record.deadline_ms,
            took_over: None,
        };
        let held = Held {
            key,
            lease,
            fence,
            record,
        };
        return Ok(Enqueued::Held(held, grant));
    }
    Ok(Enqueued::Waiting(Place {
        key,
        lease,
        mine,
        record,
        ttl,
        ahead,
        watch_from: header_revision(&resp) + 1,
        holder: owner.first().map(holder_info),
    }))
}

/// Wait in `place` until the lock is ours: `None` if the lease was lost meanwhile.
///
/// A waiter watches the key right ahead of it (see [`Watch`]). When that key is deleted, one
/// round trip both looks and takes the lock: a transaction that, if no key of the queue is
/// older than ours (and ours is still there), writes our record with the new deadline, and
/// otherwise reads the key now right ahead (the one deleted was a waiter that left), with a
/// lease keepalive sent alongside it (the deadline counts from before both were sent).
async fn wait(
    client: &Client,
    name: &str,
    options: &lockbydir_protocol::Options,
    give_up: Option<Instant>,
    cancel: &Cancel,
    mut place: Place,
) -> Res<Option<Acquired>> {
    let prefix = keys::queue(name);
    let key = place.key.clone();
    let (lease, mine) = (place.lease, place.mine);
    // The last value of the key deleted right before the look that found the lock ours.
    let mut gone_ahead: Option<KeyValue> = None;
    let keep_every = Duration::from_millis((place.ttl as u64).saturating_mul(1000) / 3);
    let mut next_keep = Instant::now() + keep_every;
    // A watch kept across a look, for the key it watches.
    let mut kept_watch: Option<Watch> = None;
    let gave_up = |place: Place| async move {
        leave(client, &place).await?;
        Ok::<_, wit::Error>(Some(Acquired::Busy(place.holder)))
    };
    loop {
        let Some(ahead) = place.ahead.clone() else {
            // Ours if nobody is ahead any more; else, who is right ahead now.
            let started_ms = now_ms();
            let mut record = place.record.clone();
            record.deadline_ms = started_ms.saturating_add(options.timeout_ms);
            let claim = Txn::new()
                .when([
                    Compare::create_revision(key.clone(), CompareOp::Equal, mine),
                    Compare::create_revision(prefix.clone(), CompareOp::Greater, mine - 1)
                        .with_prefix(),
                ])
                .and_then([TxnOp::put(
                    key.clone(),
                    record.encode(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([
                    ahead_op(&prefix, mine),
                    TxnOp::get(key.clone(), None),
                    owner_op(name),
                ]);
            let (claimed, alive) = tokio::join!(
                txn(client, "txn", &key, claim),
                keep_alive(client, lease, &key)
            );
            let resp = match claimed {
                Ok((resp, _)) => resp,
                // The lease expired before the put.
                Err(wit::Error::Unavailable(e)) if e.contains("lease not found") => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if !alive? {
                return Ok(None);
            }
            next_keep = Instant::now() + keep_every;
            if resp.succeeded() {
                place.record = record;
                break;
            }
            gone_ahead = None;
            if kvs(&resp, 1).is_empty() {
                return Ok(None);
            }
            if let Some(h) = kvs(&resp, 2).first() {
                place.holder = Some(holder_info(h));
            }
            place.ahead = kvs(&resp, 0).into_iter().next();
            place.watch_from = header_revision(&resp) + 1;
            continue;
        };
        // From here on, whatever ends the watch, the next look reads the queue again.
        place.ahead = None;
        let mut watch = match kept_watch.take() {
            // Started before the look that found this key still ahead: it misses nothing.
            Some(w) if w.is_on(&ahead) => w,
            _ => match Watch::start(client, &ahead).await {
                Ok(w) => w,
                Err(_) => {
                    // Look again (the cluster may be electing a leader); the budget bounds
                    // the wait.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !watch.sees_from(place.watch_from) {
            // The queue was written between the read and the watch's start: the key may be
            // gone already. Look once more, keeping the watch for the key if it is still ahead.
            gone_ahead = Some(ahead);
            kept_watch = Some(watch);
            continue;
        }
        // Wait for the deletion, keeping the lease alive, until patience or a cancel.
        let patience = async {
            match give_up {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            seen = watch.deleted() => {
                // The stream broke (or etcd ended the watch): look again.
                gone_ahead = match seen {
                    Seen::Deleted(last) => last,
                    Seen::Ended => None,
                };
            }
            _ = tokio::time::sleep_until(next_keep.into()) => {
                if !keep_alive(client, lease, &key).await? {
                    return Ok(None);
                }
                next_keep = Instant::now() + keep_every;
                // Look again and watch anew: a watch on a member that stalled (paused, cut
                // off) may never deliver, so no watch is trusted longer than this.
            }
            _ = patience => return gave_up(place).await,
            _ = cancel.cancelled() => return gave_up(place).await,
        }
    }
    let fence = u64::try_from(mine).unwrap_or(0);
    // Whether the one right ahead was past its deadline when it went: its lease ran out, and
    // this acquisition takes over.
    let took_over = gone_ahead
        .as_ref()
        .map(holder_info)
        .filter(|h| h.fence < fence && h.deadline_ms < now_ms());
    let grant = wit::Grant {
        fence,
        deadline_ms: place.record.deadline_ms,
        took_over,
    };
    let held = Held {
        key,
        lease,
        fence,
        record: place.record,
    };
    Ok(Some(Acquired::Held(held, grant)))
}

/// Store `record` in `key` if it is still the acquisition of revision `mine`: whether it was.
async fn write_record(
    client: &Client,
    key: &str,
    lease: i64,
    mine: i64,
    record: &Record,
) -> Res<bool> {
    let t = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, mine)])
        .and_then([TxnOp::put(
            key,
            record.encode(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    match txn(client, "txn", key, t).await {
        Ok((resp, _)) => Ok(resp.succeeded()),
        // A lease that expired between the keepalive and this put.
        Err(wit::Error::Unavailable(e)) if e.contains("lease not found") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The error value of a holder that lost its lock.
async fn compromised(client: &Client, name: &str, held: &Held) -> wit::Error {
    let now_held_by = owner(client, name).await.ok().flatten();
    wit::Error::Compromised(wit::Compromise {
        fence: held.fence,
        now_held_by,
    })
}

/// Extend `held`'s deadline by its timeout from now; returns the new deadline.
pub async fn refresh(client: &Client, name: &str, held: &mut Held) -> Res<u64> {
    let started_ms = now_ms();
    let mine = i64::try_from(held.fence).unwrap_or(i64::MAX);
    if !keep_alive(client, held.lease, &held.key).await? {
        return Err(compromised(client, name, held).await);
    }
    let mut record = held.record.clone();
    record.deadline_ms = started_ms.saturating_add(record.timeout_ms);
    if !write_record(client, &held.key, held.lease, mine, &record).await? {
        let _ = revoke(client, held.lease, &held.key).await;
        return Err(compromised(client, name, held).await);
    }
    held.record = record;
    Ok(held.record.deadline_ms)
}

/// Give the lock up: delete the key if it is still this acquisition's.
pub async fn release(client: &Client, name: &str, held: &Held) -> Res<wit::ReleaseReport> {
    let mine = i64::try_from(held.fence).unwrap_or(i64::MAX);
    let t = Txn::new()
        .when([Compare::create_revision(
            held.key.clone(),
            CompareOp::Equal,
            mine,
        )])
        .and_then([TxnOp::delete(held.key.clone(), None)]);
    let (resp, ambiguous) = txn(client, "txn", &held.key, t).await?;
    let released = resp.succeeded()
        // An earlier attempt may have deleted it: then the lease is still alive.
        || (ambiguous && keep_alive(client, held.lease, &held.key).await.unwrap_or(false));
    // The lease has no key left (or only a stale one): give it back, without waiting for
    // the answer (the next in line was already told by the deletion; a revoke that is lost
    // only lets an empty lease run out by itself).
    let (c, lease, key) = (client.clone(), held.lease, held.key.clone());
    tokio::spawn(async move {
        let _ = revoke(&c, lease, &key).await;
    });
    if !released {
        return Err(compromised(client, name, held).await);
    }
    Ok(if now_ms() > held.record.deadline_ms {
        wit::ReleaseReport::Late
    } else {
        wit::ReleaseReport::InTime
    })
}

/// Lock `name`'s state now.
pub async fn inspect(client: &Client, name: &str) -> Res<wit::LockState> {
    let t = Txn::new().and_then([owner_op(name), TxnOp::get(keys::marker(name), None)]);
    let (resp, _) = txn(client, "range", &keys::queue(name), t).await?;
    if let Some(kv) = kvs(&resp, 0).first() {
        return Ok(wit::LockState::Held(holder_info(kv)));
    }
    Ok(match kvs(&resp, 1).first() {
        Some(marker) => wit::LockState::Free(u64::try_from(marker.mod_revision()).unwrap_or(0)),
        None => wit::LockState::Absent,
    })
}

/// Every lock, sorted by name.
pub async fn list_locks(client: &Client) -> Res<Vec<wit::LockStatus>> {
    let t = Txn::new().and_then([
        TxnOp::get(keys::MARKERS, Some(GetOptions::new().with_prefix())),
        TxnOp::get(
            keys::QUEUES,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend),
            ),
        ),
    ]);
    let (resp, _) = txn(client, "range", keys::ROOT, t).await?;
    let mut holders = std::collections::BTreeMap::new();
    for kv in kvs(&resp, 1) {
        if let Some(name) = keys::name_of_waiter(kv.key()) {
            // Sorted by create revision: the first key of each lock is its holder.
            holders
                .entry(name.to_owned())
                .or_insert_with(|| holder_info(&kv));
        }
    }
    let mut out = Vec::new();
    for marker in kvs(&resp, 0) {
        let Some(name) = keys::name_of_marker(marker.key()) else {
            continue;
        };
        let state = match holders.remove(name) {
            Some(h) => wit::LockState::Held(h),
            None => wit::LockState::Free(u64::try_from(marker.mod_revision()).unwrap_or(0)),
        };
        out.push(wit::LockStatus {
            name: name.to_owned(),
            state: Ok(state),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether lock `name` exists (its marker does).
pub async fn exists(client: &Client, name: &str) -> Res<bool> {
    let t = Txn::new().and_then([TxnOp::get(
        keys::marker(name),
        Some(GetOptions::new().with_count_only()),
    )]);
    let (resp, _) = txn(client, "range", &keys::marker(name), t).await?;
    Ok(match resp.op_responses().into_iter().next() {
        Some(TxnOpResponse::Get(g)) => g.count() > 0,
        _ => false,
    })
}

/// The names of every lock, sorted.
pub async fn lock_names(client: &Client) -> Res<Vec<String>> {
    let t = Txn::new().and_then([TxnOp::get(
        keys::MARKERS,
        Some(GetOptions::new().with_prefix().with_keys_only()),
    )]);
    let (resp, _) = txn(client, "range", keys::MARKERS, t).await?;
    let mut names: Vec<String> = kvs(&resp, 0)
        .iter()
        .filter_map(|kv| keys::name_of_marker(kv.key()).map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The queue of lock `name`: every key after the holder's (the lowest create revision) is one
/// waiter, and the oldest of them is the next key. A waiter's key lives only as long as its
/// lease, so there are no expired tickets, and nothing else is written under the prefix.
pub async fn queue_status(client: &Client, name: &str) -> Res<wit::QueueStatus> {
    let prefix = keys::queue(name);
    let t = Txn::new().and_then([TxnOp::get(
        prefix.as_str(),
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend),
        ),
    )]);
    let (resp, _) = txn(client, "range", &prefix, t).await?;
    let keys = kvs(&resp, 0);
    let waiting = keys.get(1..).unwrap_or_default();
    Ok(wit::QueueStatus {
        live: u32::try_from(waiting.len()).unwrap_or(u32::MAX),
        oldest_arrival_ms: waiting
            .first()
            .map(|kv| Record::decode(kv.value()).since_ms),
        expired: 0,
        foreign: Vec::new(),
    })
}
