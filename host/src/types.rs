//! The values of the lock interface, `lockbydir:lock/types@0.2.0`, as Rust types: what
//! [`crate::Backend`] calls take and return, and what plugins get. Generated from
//! `wit/types.wit`, whose comments document every field.

pub use crate::bindings::types::{
    AcquireOutcome, Compromise, Error, Fairness, Grant, HolderInfo, IoError, LockState, LockStatus,
    Options, QueueStatus, ReleaseReport, Tuning,
};

/// Every field left out: the defaults that `wit/types.wit` documents (a lease of 30 s, no
/// limit on waiting, no label, bounded fairness, polling for one machine).
///
/// ```
/// use lockbydir::types::Options;
/// let options = Options { holder: Some("backup".into()), ..Options::default() };
/// assert_eq!(options.lease_ms, None);
/// ```
impl Default for Options {
    fn default() -> Self {
        Options {
            lease_ms: None,
            wait_ms: None,
            holder: None,
            fairness: None,
            tuning: None,
        }
    }
}

impl Options {
    /// These options with every default filled in, as the protocol takes them (not yet
    /// checked: see [`lockbydir_protocol::Options::validate`]).
    pub fn to_protocol(&self) -> lockbydir_protocol::Options {
        let default = lockbydir_protocol::Options::default();
        let (min_poll_ms, max_poll_ms, max_clock_skew_ms) = self.tuning.as_ref().map_or(
            (
                default.min_poll_ms,
                default.max_poll_ms,
                default.max_clock_skew_ms,
            ),
            |t| (t.min_poll_ms, t.max_poll_ms, t.max_clock_skew_ms),
        );
        lockbydir_protocol::Options {
            timeout_ms: self.lease_ms.unwrap_or(default.timeout_ms),
            patience_ms: self.wait_ms.unwrap_or(default.patience_ms),
            min_poll_ms,
            max_poll_ms,
            max_clock_skew_ms,
            holder: self.holder.clone().unwrap_or(default.holder),
            fairness: match self.fairness {
                None => default.fairness,
                Some(Fairness::Fifo) => lockbydir_protocol::Fairness::Fifo,
                Some(Fairness::Bounded) => lockbydir_protocol::Fairness::Bounded,
            },
        }
    }
}
