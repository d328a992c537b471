//! Lock handles as the host names them: a backend's handle number, and what a plugin's
//! `lock` resource stands for.

/// A lock handle a [`crate::Backend`] gave out: a number that means something only to the
/// backend that opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockId(pub(crate) u64);

/// What a plugin's `lock` resource stands for: its backend's handle and the lock's name.
#[derive(Debug)]
pub struct PluginLock {
    pub(crate) id: LockId,
    pub(crate) name: String,
}
