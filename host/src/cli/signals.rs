//! While `exec` holds a lock, SIGINT, SIGTERM and SIGHUP sent to lockbydir are passed on to the
//! command instead of killing lockbydir, so that the lock is released once the command exits
//! rather than left to expire.

use std::sync::atomic::{AtomicI32, Ordering};

/// The last signal caught and not yet passed on (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    PENDING.store(signal, Ordering::SeqCst);
}

/// The signals that are passed on.
const PASSED_ON: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Start catching the signals. A command started afterwards still gets the default
/// dispositions (caught signals are reset by `exec`).
pub fn catch() {
    for signal in PASSED_ON {
        // SAFETY: `record` only stores into an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, record as *const () as libc::sighandler_t);
        }
    }
}

/// Pass a caught signal, if any, on to process `pid`; returns it.
pub fn pass_on(pid: u32) -> Option<i32> {
    let signal = PENDING.swap(0, Ordering::SeqCst);
    if signal == 0 {
        return None;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
    Some(signal)
}
