//! The protocol's [`Env`] inside the component: the standard one, plus the host's optional
//! wake-ups.
//!
//! WASI 0.2 has no change notification, so a waiter can only sleep and look again. A host
//! that can do better says so in the component's environment with `LOCKBYDIR_WAKEUPS=stat-at`
//! (the lockbydir host does, where the lock directory's filesystem delivers events). The
//! convention is then: [`Env::sleep_until_changed`] `stat`s the entry it waits on, relative to
//! the lock directory's preopen, and sleeps as usual; the host notices that `stat-at`, watches
//! the entry's directory before doing it, and ends the next sleep when the entry is renamed
//! away or removed. A host that knows nothing of this (`wasmtime run`, jco, wasmtime-py) sees
//! a plain `stat` and a plain sleep, and without the variable the sleep is plain: no import
//! beyond WASI is needed either way.

use std::sync::OnceLock;

use lockbydir_protocol::{Env, StdEnv};

use crate::wasi_fs::WasiFs;

/// The environment variable by which the host advertises its wake-ups, and its one value.
const WAKEUPS_VAR: &str = "LOCKBYDIR_WAKEUPS";
const WAKEUPS_STAT_AT: &str = "stat-at";

/// Whether the host advertised `LOCKBYDIR_WAKEUPS=stat-at` (read once: the environment of a
/// component instance does not change).
fn host_wakes() -> bool {
    static WAKES: OnceLock<bool> = OnceLock::new();
    *WAKES.get_or_init(|| std::env::var(WAKEUPS_VAR).is_ok_and(|v| v == WAKEUPS_STAT_AT))
}

/// [`StdEnv`] with the host's wake-ups, when it has them.
#[derive(Debug, Default)]
pub struct GuestEnv(StdEnv);

impl Env for GuestEnv {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.0.monotonic_ms()
    }
    fn monotonic_us(&self) -> u64 {
        self.0.monotonic_us()
    }
    fn sleep_ms(&self, ms: u64) {
        self.0.sleep_ms(ms)
    }
    fn sleep_us(&self, us: u64) {
        self.0.sleep_us(us)
    }
    fn random_u64(&self) -> u64 {
        self.0.random_u64()
    }
    fn wakes_on_change(&self) -> bool {
        host_wakes()
    }
    fn sleep_until_changed(&self, path: &str, us: u64) {
        // The `stat-at` is the request (see the module documentation): an entry already gone
        // has changed, so there is nothing to wait for.
        if host_wakes() && WasiFs::lock_dir().is_gone_from_preopen(path) {
            return;
        }
        self.0.sleep_us(us)
    }
}
