//! When an expired lock may be taken over: by the waiter's own clock and by the
//! filesystem's.
//!
//! # Time: when a lock past its deadline may be taken over
//!
//! The holder writes its own timeout and deadline into the entry. A waiter takes the lock over
//! only when its own clock is past that deadline plus `max_clock_skew_ms`; until then it sleeps
//! until the deadline or its own backoff, whichever is first. A holder counts itself valid
//! only until its deadline by its own clock. With clocks that differ by at most the skew, a
//! holder's belief and a takeover never overlap in time. A holder that is paused past its
//! deadline (a stop, a swap storm) can lose the lock without knowing until its next call:
//! that is what the fencing token is for.

use crate::entry::Holder;
use crate::env::Env;
use crate::error::Error;
use crate::fs::Fs;

use super::Lock;
use super::directory::{filesystem_now, io};

impl<F: Fs, E: Env> Lock<F, E> {
    /// The second half of the takeover rule (borg's): the lock must also look expired by the
    /// filesystem's own clock, so a waiter whose clock runs ahead cannot take a live lock.
    ///
    /// The lockdir's mtime is the filesystem's time of the last rename inside it, that is of
    /// the acquisition or refresh that wrote the current deadline (or of a later mark, which
    /// only delays this). The filesystem's "now" is the mtime of a probe directory made for
    /// the purpose. Both readings come from one clock (the file server's, on a network
    /// filesystem), so client clocks do not matter. A filesystem without timestamps passes
    /// the check (the waiter's own clock decides).
    ///
    /// Kernels stamp mtimes from a coarse clock that lags real time (see
    /// [`FS_CLOCK_LAG_MS`]) and store them with a granularity (see [`fs_clock_margin_ms`]),
    /// so the lockdir's mtime can be *earlier* than the holder's clock reading taken before
    /// its rename; neither can make a reading *later* than the moment it was taken. Say the
    /// holder read its clock at `h` (its deadline is `h + timeout`) and renamed at `r >= h`,
    /// stamped `m >= r - margin`; the probe was made at `p`, stamped `n <= p`. The rule
    /// `n - m > timeout + margin` gives `p >= n > m + timeout + margin >= r + timeout >=
    /// h + timeout`: more than the timeout has passed on the filesystem's clock since the
    /// holder's reading, so a holder whose clock runs at the filesystem's rate is past its
    /// deadline. Without the margin, a takeover came up to several ms before the deadline
    /// (`protocol/tests/fs_clock.rs`).
    ///
    /// A marked entry records when it was written ([`Holder::written_ms`], read by its
    /// marker before the mark moved the lockdir's mtime); the earlier of that and the
    /// lockdir's mtime is used, so a mark does not delay the takeover of a dead holder. The
    /// record is only a name in the lockdir: one made up (by hand, or by a hostile plugin
    /// that can rename entries anyway) can at worst make rule (b) pass early, never make it
    /// pass on its own: rule (a), the waiter's own clock past the deadline plus the skew
    /// margin, is still required. One in the future is ignored (the lockdir's mtime is
    /// earlier), so it cannot wedge the lock either.
    pub(super) fn stale_by_filesystem_clock(&self, holder: &Holder) -> Result<bool, Error> {
        let Some(mtime) = self
            .fs
            .modified_ms(&self.lockdir)
            .map_err(|e| io("stat", self.lockdir.clone(), e))?
        else {
            return Ok(true);
        };
        let changed = holder.written_ms.map_or(mtime, |w| w.min(mtime));
        let fs_now = filesystem_now(&self.fs, &self.env, &self.name)?;
        Ok(fs_now.is_none_or(|now| {
            let margin = fs_clock_margin_ms(changed, now);
            // PLANTED BUG (c), only with the `planted-bugs` feature and only when a test
            // switches it on: no margin for the filesystem clock's lag and granularity.
            #[cfg(feature = "planted-bugs")]
            let margin = crate::planted::clock_margin(margin);
            now.saturating_sub(changed) > holder.timeout_ms.saturating_add(margin)
        }))
    }
}

/// How far behind real time a filesystem's mtime may be (ms), granularity aside: how much
/// *earlier* than a clock reading taken just before a change the change's mtime may be.
///
/// Linux stamps mtimes from its coarse clock, which advances once per tick (4 ms at HZ=250,
/// 10 ms at HZ=100) and, on a CPU that was idle (the tick stops), is stale until the next
/// tick: measured here (kernel 6.18, HZ=250, tmpfs and ext4; `cargo test --release -p
/// lockbydir-protocol --test fs_clock -- --ignored --nocapture`) up to 9.0 ms, about two
/// ticks, for a rename right after an idle spell (and up to 7.5 ms for 0.3 % of renames back
/// to back). Those ticks at HZ=100 are about 23 ms; readings are also cut to whole
/// milliseconds (up to 1 ms more). 30 ms covers both, with room; it costs a takeover of a
/// dead holder 30 ms.
pub const FS_CLOCK_LAG_MS: u64 = 30;

/// Timestamp granularities recognised from the readings themselves (ms), coarsest first:
/// FAT's 2 s; whole seconds (ext3 with small inodes, HFS+, some NFS servers and FUSE
/// filesystems); 100 ms and 10 ms steps.
pub(super) const TIMESTAMP_GRANULARITIES_MS: [u64; 4] = [2_000, 1_000, 100, 10];

/// The margin rule (b) adds to the holder's timeout, for the lockdir's mtime `changed` and
/// the filesystem's "now" `now` (ms): [`FS_CLOCK_LAG_MS`] plus the granularity both readings
/// show (if both are whole seconds, the filesystem is taken to keep whole seconds). A
/// filesystem with finer timestamps whose two readings happen to be whole seconds is taken
/// for a coarse one: that only delays this takeover.
pub fn fs_clock_margin_ms(changed: u64, now: u64) -> u64 {
    let granularity = TIMESTAMP_GRANULARITIES_MS
        .into_iter()
        .find(|&g| changed.is_multiple_of(g) && now.is_multiple_of(g))
        .unwrap_or(0);
    FS_CLOCK_LAG_MS + granularity
}
