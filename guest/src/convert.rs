//! Conversions between the protocol's Rust types and the WIT types of
//! `lockbydir:lock@0.2.0` (interface `types`).

use lockbydir_protocol as protocol;

use crate::lockbydir::lock::types as wit;

/// WIT options to protocol options: a field left out takes the protocol's default (range
/// checks happen in the protocol).
pub fn options(o: wit::Options) -> protocol::Options {
    let default = protocol::Options::default();
    let tuning = o.tuning.map_or(
        (
            default.min_poll_ms,
            default.max_poll_ms,
            default.max_clock_skew_ms,
        ),
        |t| (t.min_poll_ms, t.max_poll_ms, t.max_clock_skew_ms),
    );
    protocol::Options {
        timeout_ms: o.lease_ms.unwrap_or(default.timeout_ms),
        patience_ms: o.wait_ms.unwrap_or(default.patience_ms),
        min_poll_ms: tuning.0,
        max_poll_ms: tuning.1,
        max_clock_skew_ms: tuning.2,
        holder: o.holder.unwrap_or(default.holder),
        fairness: match o.fairness {
            None => default.fairness,
            Some(wit::Fairness::Fifo) => protocol::Fairness::Fifo,
            Some(wit::Fairness::Bounded) => protocol::Fairness::Bounded,
        },
    }
}

/// A protocol holder record as WIT.
pub fn holder(h: protocol::Holder) -> wit::HolderInfo {
    wit::HolderInfo {
        holder: h.label,
        fence: h.fence,
        since_ms: h.since_ms,
        deadline_ms: h.deadline_ms,
        lease_ms: h.timeout_ms,
    }
}

/// A protocol lock state as WIT.
pub fn state(s: protocol::LockState) -> wit::LockState {
    match s {
        protocol::LockState::Absent => wit::LockState::Absent,
        protocol::LockState::Free(fence) => wit::LockState::Free(fence),
        protocol::LockState::Held(h) => wit::LockState::Held(holder(h)),
        protocol::LockState::Expired(h) => wit::LockState::Expired(holder(h)),
    }
}

/// A protocol acquisition outcome as WIT.
pub fn outcome(o: protocol::Outcome) -> wit::AcquireOutcome {
    match o {
        protocol::Outcome::Acquired(g) => wit::AcquireOutcome::Acquired(wit::Grant {
            fence: g.fence,
            deadline_ms: g.deadline_ms,
            took_over: g.took_over.map(holder),
        }),
        protocol::Outcome::Busy(h) => wit::AcquireOutcome::Busy(h.map(holder)),
    }
}

/// A protocol release report as WIT.
pub fn released(r: protocol::Released) -> wit::ReleaseReport {
    match r {
        protocol::Released::InTime => wit::ReleaseReport::InTime,
        protocol::Released::Late => wit::ReleaseReport::Late,
    }
}

/// A protocol error as a WIT error value.
pub fn error(e: protocol::Error) -> wit::Error {
    match e {
        protocol::Error::InvalidName(n) => wit::Error::InvalidName(n.to_string()),
        protocol::Error::InvalidOption(o) => wit::Error::InvalidOption(o),
        protocol::Error::Io {
            operation,
            path,
            source,
        } => wit::Error::Io(wit::IoError {
            operation: operation.to_owned(),
            path,
            message: source.message,
        }),
        protocol::Error::Corrupt { .. } => wit::Error::Corrupt(e.to_string()),
        protocol::Error::Unsettled { ref path } => wit::Error::Io(wit::IoError {
            operation: "read-state".to_owned(),
            path: path.clone(),
            message: e.to_string(),
        }),
        protocol::Error::FencesExhausted { path } => wit::Error::FencesExhausted(path),
        protocol::Error::NotHeld => wit::Error::NotHeld,
        protocol::Error::AlreadyHeld => wit::Error::AlreadyHeld,
        protocol::Error::Compromised { fence, now_held_by } => {
            wit::Error::Compromised(wit::Compromise {
                fence,
                now_held_by: now_held_by.map(holder),
            })
        }
    }
}

/// A protocol queue look as WIT (counts beyond `u32::MAX` are shown as `u32::MAX`).
pub fn queue(q: protocol::QueueStatus) -> wit::QueueStatus {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    wit::QueueStatus {
        live: count(q.live),
        oldest_arrival_ms: q.oldest_arrival_ms,
        expired: count(q.expired),
        foreign: q.foreign,
    }
}
