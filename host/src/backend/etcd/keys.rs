//! Where a lock lives in etcd, and what its keys hold.
//!
//! - `lockbydir/q/NAME/LEASE`: one key per acquisition in progress (waiting or holding),
//!   attached to that acquisition's lease, its value a [`Record`]. The holder is the key with
//!   the lowest create revision; that revision is its fence.
//! - `lockbydir/m/NAME`: written (empty, without a lease) in the same transaction as every
//!   queue key: the lock exists, and its mod revision is at least the last fence handed out.
//!
//! Lock names never contain `/` (see [`lockbydir_protocol::LockName`]), so a name's queue
//! prefix holds its own keys only.

use serde::{Deserialize, Serialize};

/// The root of every key lockbydir writes.
pub const ROOT: &str = "lockbydir/";
/// The prefix of the queues of all locks.
pub const QUEUES: &str = "lockbydir/q/";
/// The prefix of the markers of all locks.
pub const MARKERS: &str = "lockbydir/m/";

/// The queue prefix of lock `name`: `lockbydir/q/NAME/`.
pub fn queue(name: &str) -> String {
    format!("{QUEUES}{name}/")
}

/// The queue key of the acquisition with lease `lease`.
pub fn waiter(name: &str, lease: i64) -> String {
    format!("{}{lease:016x}", queue(name))
}

/// The marker key of lock `name`.
pub fn marker(name: &str) -> String {
    format!("{MARKERS}{name}")
}

/// The lock name of a queue key, if it is one.
pub fn name_of_waiter(key: &[u8]) -> Option<&str> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(QUEUES)?;
    rest.rsplit_once('/').map(|(name, _)| name)
}

/// The lock name of a marker key, if it is one.
pub fn name_of_marker(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key).ok()?.strip_prefix(MARKERS)
}

/// What a queue key holds: who, and the holder's own times (its clock).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The holder's label (cut as a lockdir keeps it).
    pub holder: String,
    /// When the acquisition started, ms since the epoch.
    pub since_ms: u64,
    /// The holder's own deadline, ms since the epoch (the lease lasts at least this long).
    pub deadline_ms: u64,
    /// The timeout it chose, ms.
    pub timeout_ms: u64,
}

impl Record {
    /// The value to store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// A stored value; one that is no record (written by something else) shows as such.
    pub fn decode(value: &[u8]) -> Record {
        serde_json::from_slice(value).unwrap_or_else(|_| Record {
            holder: "(not written by lockbydir)".into(),
            since_ms: 0,
            deadline_ms: 0,
            timeout_ms: 0,
        })
    }
}

/// The lease TTL, in whole seconds, for a holder's timeout: rounded up, and at least 2 s,
/// etcd's own minimum (it silently grants 2 s for less). The lease thus never ends before the
/// holder's own deadline.
pub fn lease_ttl_s(timeout_ms: u64) -> i64 {
    let secs = timeout_ms.div_ceil(1000).max(2);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds_and_at_least_two() {
        assert_eq!(lease_ttl_s(1), 2);
        assert_eq!(lease_ttl_s(2000), 2);
        assert_eq!(lease_ttl_s(2001), 3);
        assert_eq!(lease_ttl_s(30_000), 30);
    }

    #[test]
    fn keys_give_their_lock_name_back() {
        let k = waiter("build", 0x7f);
        assert_eq!(k, "lockbydir/q/build/000000000000007f");
        assert_eq!(name_of_waiter(k.as_bytes()), Some("build"));
        assert_eq!(name_of_marker(marker("a b").as_bytes()), Some("a b"));
        assert_eq!(name_of_waiter(b"other/key"), None);
    }

    #[test]
    fn records_round_trip_and_foreign_values_show_as_foreign() {
        let r = Record {
            holder: "job \u{1b}[31m".into(),
            since_ms: 1,
            deadline_ms: 2,
            timeout_ms: 3,
        };
        assert_eq!(Record::decode(&r.encode()), r);
        assert_eq!(Record::decode(b"xyz").deadline_ms, 0);
    }
}
