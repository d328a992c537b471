//! Conversions between the two generated copies of the lock interface's types: the plugin
//! import side ([`crate::bindings::plugin`]) and the lock component export side
//! ([`crate::bindings::wit`]). The shapes are identical; only the Rust types differ.

use crate::bindings::plugin::lockbydir::lock::lock as imp;
use crate::bindings::wit as exp;

impl From<imp::Options> for exp::Options {
    fn from(o: imp::Options) -> Self {
        exp::Options {
            timeout_ms: o.timeout_ms,
            patience_ms: o.patience_ms,
            min_poll_ms: o.min_poll_ms,
            max_poll_ms: o.max_poll_ms,
            max_clock_skew_ms: o.max_clock_skew_ms,
            holder: o.holder,
        }
    }
}

impl From<exp::HolderInfo> for imp::HolderInfo {
    fn from(h: exp::HolderInfo) -> Self {
        imp::HolderInfo {
            holder: h.holder,
            fence: h.fence,
            since_ms: h.since_ms,
            deadline_ms: h.deadline_ms,
            timeout_ms: h.timeout_ms,
        }
    }
}

impl From<exp::AcquireOutcome> for imp::AcquireOutcome {
    fn from(o: exp::AcquireOutcome) -> Self {
        match o {
            exp::AcquireOutcome::Acquired(g) => imp::AcquireOutcome::Acquired(imp::Grant {
                fence: g.fence,
                deadline_ms: g.deadline_ms,
                took_over: g.took_over.map(Into::into),
            }),
            exp::AcquireOutcome::Busy(h) => imp::AcquireOutcome::Busy(h.map(Into::into)),
        }
    }
}

impl From<exp::LockState> for imp::LockState {
    fn from(s: exp::LockState) -> Self {
        match s {
            exp::LockState::Absent => imp::LockState::Absent,
            exp::LockState::Free(f) => imp::LockState::Free(f),
            exp::LockState::Held(h) => imp::LockState::Held(h.into()),
            exp::LockState::Expired(h) => imp::LockState::Expired(h.into()),
        }
    }
}

impl From<exp::LockStatus> for imp::LockStatus {
    fn from(s: exp::LockStatus) -> Self {
        imp::LockStatus {
            name: s.name,
            state: s.state.map(Into::into).map_err(Into::into),
        }
    }
}

impl From<exp::ReleaseReport> for imp::ReleaseReport {
    fn from(r: exp::ReleaseReport) -> Self {
        match r {
            exp::ReleaseReport::InTime => imp::ReleaseReport::InTime,
            exp::ReleaseReport::Late => imp::ReleaseReport::Late,
        }
    }
}

impl From<exp::Error> for imp::Error {
    fn from(e: exp::Error) -> Self {
        match e {
            exp::Error::InvalidName(s) => imp::Error::InvalidName(s),
            exp::Error::InvalidOption(s) => imp::Error::InvalidOption(s),
            exp::Error::Io(io) => imp::Error::Io(imp::IoError {
                operation: io.operation,
                path: io.path,
                message: io.message,
            }),
            exp::Error::NotHeld => imp::Error::NotHeld,
            exp::Error::AlreadyHeld => imp::Error::AlreadyHeld,
            exp::Error::Denied(why) => imp::Error::Denied(why),
            exp::Error::Compromised(c) => imp::Error::Compromised(imp::Compromise {
                fence: c.fence,
                now_held_by: c.now_held_by.map(Into::into),
            }),
            exp::Error::Corrupt(why) => imp::Error::Corrupt(why),
            exp::Error::FencesExhausted(path) => imp::Error::FencesExhausted(path),
        }
    }
}

impl From<exp::QueueStatus> for imp::QueueStatus {
    fn from(q: exp::QueueStatus) -> Self {
        imp::QueueStatus {
            live: q.live,
            oldest_arrival_ms: q.oldest_arrival_ms,
            expired: q.expired,
            foreign: q.foreign,
        }
    }
}
