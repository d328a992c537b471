//! What a lock records about its holder, and the state of a lock at one instant.

use std::time::{Duration, SystemTime};

use crate::convert::instant;
use crate::raw::lockbydir::lock::types as wit;

/// What a lock records about its current (or last seen) holder.
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::{LockState, Lock};
///
/// if let LockState::Held(holder) = Lock::new("db")?.inspect()? {
///     println!("{} holds it (fence {}) until {:?}", holder.label, holder.fence, holder.deadline);
/// }
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holder's label (empty if it gave none), as stored in the lock directory: escape it
    /// before printing it to a terminal.
    pub label: String,
    /// The fencing token of that acquisition.
    pub fence: u64,
    /// When it took the lock, by its own clock.
    pub since: SystemTime,
    /// When the lock expires unless the holder refreshes it.
    pub deadline: SystemTime,
    /// The lease the holder chose.
    pub lease: Duration,
}

impl From<wit::HolderInfo> for Holder {
    fn from(h: wit::HolderInfo) -> Self {
        Holder {
            label: h.holder,
            fence: h.fence,
            since: instant(h.since_ms),
            deadline: instant(h.deadline_ms),
            lease: Duration::from_millis(h.lease_ms),
        }
    }
}

/// The state of a lock as seen at one instant ([`Lock::inspect`](crate::Lock::inspect)).
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::{Lock, LockState};
///
/// match Lock::new("db")?.inspect()? {
///     LockState::Absent => println!("never taken"),
///     LockState::Free { last_fence } => println!("free; last fence {last_fence}"),
///     LockState::Held(h) => println!("held by {:?}", h.label),
///     LockState::Expired(h) => println!("{:?} let it expire; the next waiter takes it", h.label),
/// }
/// # Ok::<(), lockbydir_plugin::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockState {
    /// The lock does not exist yet: nobody ever took it (or it was cleaned away).
    Absent,
    /// Free.
    Free {
        /// The last fencing token handed out (0 if none).
        last_fence: u64,
    },
    /// Held, and not yet to be taken over.
    Held(Holder),
    /// Held, but past its deadline: the next waiter takes it over.
    Expired(Holder),
}

impl From<wit::LockState> for LockState {
    fn from(s: wit::LockState) -> Self {
        match s {
            wit::LockState::Absent => LockState::Absent,
            wit::LockState::Free(last_fence) => LockState::Free { last_fence },
            wit::LockState::Held(h) => LockState::Held(h.into()),
            wit::LockState::Expired(h) => LockState::Expired(h.into()),
        }
    }
}
