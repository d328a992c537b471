//! Measuring lockbydir without the host's wake-ups: `LOCKBYDIR_NO_WAKEUPS=1`, read by the
//! host when a lock service is made, gives the polling fallback that hosts without the
//! wake-up capability get. Child processes get it in their environment; in this process it
//! is set for the whole of a measurement of polling contenders on threads.

use std::process::Command;

/// The variable the host reads (see `host/src/wakeup.rs`).
pub const NO_WAKEUPS: &str = "LOCKBYDIR_NO_WAKEUPS";

/// Give a child process the polling fallback, or leave it the default (wake-ups).
pub fn for_child(cmd: &mut Command, polling: bool) {
    if polling {
        cmd.env(NO_WAKEUPS, "1");
    } else {
        cmd.env_remove(NO_WAKEUPS);
    }
}

/// Run `f` with this process's environment saying `LOCKBYDIR_NO_WAKEUPS=1` if `polling`
/// (and without it otherwise), then put back what was there.
///
/// Only call this while the benchmark runs no contender threads of its own: it is called
/// around a measurement, before its threads start (each makes its lock service at once, the
/// variable is read then) and after they have all been joined.
pub fn in_process<T>(polling: bool, f: impl FnOnce() -> T) -> T {
    let before = std::env::var_os(NO_WAKEUPS);
    set(polling.then_some(std::ffi::OsStr::new("1")));
    let out = f();
    set(before.as_deref());
    out
}

fn set(value: Option<&std::ffi::OsStr>) {
    // SAFETY: called between measurements, when no thread of the benchmark reads the
    // environment (see `in_process`); wasmtime's own threads do not read it.
    unsafe {
        match value {
            Some(v) => std::env::set_var(NO_WAKEUPS, v),
            None => std::env::remove_var(NO_WAKEUPS),
        }
    }
}
