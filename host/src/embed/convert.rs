//! Conversions between the sync and the async copies of the plugin import's types
//! ([`crate::bindings::plugin`] and [`crate::bindings::plugin_async`]): the shapes are
//! identical, only the Rust types differ. The async host runs the sync implementation.

use crate::bindings::plugin::lockbydir::lock::lock as imp;
use crate::bindings::plugin_async::lockbydir::lock::lock as aimp;

impl From<aimp::Options> for imp::Options {
    fn from(o: aimp::Options) -> Self {
        imp::Options {
            timeout_ms: o.timeout_ms,
            patience_ms: o.patience_ms,
            min_poll_ms: o.min_poll_ms,
            max_poll_ms: o.max_poll_ms,
            max_clock_skew_ms: o.max_clock_skew_ms,
            holder: o.holder,
        }
    }
}

impl From<imp::HolderInfo> for aimp::HolderInfo {
    fn from(h: imp::HolderInfo) -> Self {
        aimp::HolderInfo {
            holder: h.holder,
            fence: h.fence,
            since_ms: h.since_ms,
            deadline_ms: h.deadline_ms,
            timeout_ms: h.timeout_ms,
        }
    }
}

impl From<imp::QueueStatus> for aimp::QueueStatus {
    fn from(q: imp::QueueStatus) -> Self {
        aimp::QueueStatus {
            live: q.live,
            oldest_arrival_ms: q.oldest_arrival_ms,
            expired: q.expired,
            foreign: q.foreign,
        }
    }
}

impl From<imp::AcquireOutcome> for aimp::AcquireOutcome {
    fn from(o: imp::AcquireOutcome) -> Self {
        match o {
            imp::AcquireOutcome::Acquired(g) => aimp::AcquireOutcome::Acquired(aimp::Grant {
                fence: g.fence,
                deadline_ms: g.deadline_ms,
                took_over: g.took_over.map(Into::into),
            }),
            imp::AcquireOutcome::Busy(h) => aimp::AcquireOutcome::Busy(h.map(Into::into)),
        }
    }
}

impl From<imp::LockState> for aimp::LockState {
    fn from(s: imp::LockState) -> Self {
        match s {
            imp::LockState::Absent => aimp::LockState::Absent,
            imp::LockState::Free(f) => aimp::LockState::Free(f),
            imp::LockState::Held(h) => aimp::LockState::Held(h.into()),
            imp::LockState::Expired(h) => aimp::LockState::Expired(h.into()),
        }
    }
}

impl From<imp::LockStatus> for aimp::LockStatus {
    fn from(s: imp::LockStatus) -> Self {
        aimp::LockStatus {
            name: s.name,
            state: s.state.map(Into::into).map_err(Into::into),
        }
    }
}

impl From<imp::ReleaseReport> for aimp::ReleaseReport {
    fn from(r: imp::ReleaseReport) -> Self {
        match r {
            imp::ReleaseReport::InTime => aimp::ReleaseReport::InTime,
            imp::ReleaseReport::Late => aimp::ReleaseReport::Late,
        }
    }
}

impl From<imp::Error> for aimp::Error {
    fn from(e: imp::Error) -> Self {
        match e {
            imp::Error::InvalidName(s) => aimp::Error::InvalidName(s),
            imp::Error::InvalidOption(s) => aimp::Error::InvalidOption(s),
            imp::Error::Io(io) => aimp::Error::Io(aimp::IoError {
                operation: io.operation,
                path: io.path,
                message: io.message,
            }),
            imp::Error::NotHeld => aimp::Error::NotHeld,
            imp::Error::AlreadyHeld => aimp::Error::AlreadyHeld,
            imp::Error::Denied(why) => aimp::Error::Denied(why),
            imp::Error::Compromised(c) => aimp::Error::Compromised(aimp::Compromise {
                fence: c.fence,
                now_held_by: c.now_held_by.map(Into::into),
            }),
            imp::Error::Corrupt(why) => aimp::Error::Corrupt(why),
            imp::Error::FencesExhausted(path) => aimp::Error::FencesExhausted(path),
        }
    }
}
