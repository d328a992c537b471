//! Conversions between the interface's numbers (milliseconds since the epoch, durations in
//! milliseconds) and std's time types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole milliseconds of `d`, saturating: a duration too long for the interface is refused by
/// the host's option check, not wrapped.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(crate) fn instant(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
