//! The signals `exec` handles: SIGINT, SIGTERM and SIGHUP. While it waits for the lock, one of
//! them ends the wait (the ticket is withdrawn) and lockbydir exits 128 + the signal; while
//! the command runs, they are passed on to it, and the lock is released once it exits.
//!
//! A signal that was ignored when lockbydir started (`nohup`, a shell's `trap '' HUP`) stays
//! ignored: it is not caught, so it neither ends the wait nor reaches the command, which
//! inherits the ignored disposition as it would without lockbydir.

use std::sync::mpsc::Sender;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

/// The signals `exec` catches (unless ignored at start).
const HANDLED: [libc::c_int; 3] = [SIGINT, SIGTERM, SIGHUP];

/// A signal that arrived.
#[derive(Debug, Clone, Copy)]
pub struct Caught {
    /// Its number.
    pub signal: i32,
    /// Sent by the kernel (a terminal's Ctrl-C, a hangup), not by a process with kill(2).
    pub by_kernel: bool,
}

/// Whether `signal` is ignored now (SIG_IGN), as `nohup` leaves SIGHUP.
fn ignored(signal: libc::c_int) -> bool {
    // SAFETY: with a null new action, sigaction(2) only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Catch the handled signals that are not ignored, on a thread of their own that
/// sends each to `to` and then calls `on_signal`. Returns the signals caught.
pub fn watch<T: Send + 'static>(
    to: Sender<T>,
    wrap: fn(Caught) -> T,
    on_signal: impl Fn(Caught) + Send + 'static,
) -> std::io::Result<Vec<i32>> {
    let caught: Vec<i32> = HANDLED.into_iter().filter(|&s| !ignored(s)).collect();
    let mut signals = SignalsInfo::<WithOrigin>::new(&caught)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for origin in signals.forever() {
                let caught = Caught {
                    signal: origin.signal,
                    by_kernel: matches!(origin.cause, Cause::Kernel),
                };
                // The event first, then the reaction: whoever `on_signal` wakes (a cancelled
                // wait) must find the signal already in the channel, or it would take the
                // cancelled wait for patience that ran out.
                let sent = to.send(wrap(caught)).is_ok();
                on_signal(caught);
                if !sent {
                    return;
                }
            }
        })?;
    Ok(caught)
}
