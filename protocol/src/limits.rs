//! Limits every part of the protocol shares: a leaf module, so that the lock and the
//! encoding of its entries can both use them without depending on each other.

/// The longest timeout accepted: about ten years, far from any overflow.
pub const MAX_TIMEOUT_MS: u64 = 10 * 366 * 24 * 3600 * 1000;
