//! Clocks, sleeping and randomness: everything the protocol takes from its surroundings
//! besides the filesystem.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time and randomness as the protocol sees them. The real one is [`StdEnv`]; the model
/// checker supplies virtual clocks (with skew) and deterministic tokens.
pub trait Env {
    /// Wall-clock time in milliseconds since the Unix epoch. Deadlines stored in lockdirs are
    /// on this clock.
    fn now_ms(&self) -> u64;
    /// Milliseconds on a clock that never goes backwards (for patience and backoff).
    fn monotonic_ms(&self) -> u64;
    /// Microseconds on the same clock as [`Env::monotonic_ms`] (for the fairness bound). An
    /// environment without a finer clock keeps the default: its milliseconds times 1000.
    fn monotonic_us(&self) -> u64 {
        self.monotonic_ms().saturating_mul(1000)
    }
    /// Block this caller for `ms` milliseconds.
    fn sleep_ms(&self, ms: u64);
    /// Block this caller for about `us` microseconds. An environment that cannot sleep that
    /// finely sleeps longer (the default rounds up to whole milliseconds).
    fn sleep_us(&self, us: u64) {
        self.sleep_ms(us.div_ceil(1000));
    }
    /// A random 64-bit number; acquisition tokens are made of these.
    fn random_u64(&self) -> u64;
    /// Whether [`Env::sleep_until_changed`] is really woken by changes (its environment has
    /// change notification, as a host with inotify does). When it is not, that sleep is a
    /// plain sleep and waiters must keep polling.
    fn wakes_on_change(&self) -> bool {
        false
    }
    /// Sleep about `us` microseconds, or less: until the entry at `path` (relative to the lock
    /// directory, for example `N.lockdir/held.…` or `N.queue/wait.…`) is renamed or removed,
    /// if this environment can tell. Only a hint: it may end early for no reason, late, or
    /// not at all before `us` have passed, so the caller looks again after it, always.
    fn sleep_until_changed(&self, path: &str, us: u64) {
        let _ = path;
        self.sleep_us(us);
    }
}

/// A borrowed environment is one too (so that a [`crate::Lock`] can work on a caller's).
impl<T: Env + ?Sized> Env for &T {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        (**self).monotonic_ms()
    }
    fn monotonic_us(&self) -> u64 {
        (**self).monotonic_us()
    }
    fn sleep_ms(&self, ms: u64) {
        (**self).sleep_ms(ms)
    }
    fn sleep_us(&self, us: u64) {
        (**self).sleep_us(us)
    }
    fn random_u64(&self) -> u64 {
        (**self).random_u64()
    }
    fn wakes_on_change(&self) -> bool {
        (**self).wakes_on_change()
    }
    fn sleep_until_changed(&self, path: &str, us: u64) {
        (**self).sleep_until_changed(path, us)
    }
}

/// [`Env`] on the standard library: `SystemTime`, `Instant`, `thread::sleep` and the OS
/// random source (wasi:clocks and wasi:random inside the component).
#[derive(Debug)]
pub struct StdEnv {
    start: Instant,
}

impl StdEnv {
    /// A new environment; its monotonic clock starts at 0 now.
    pub fn new() -> Self {
        StdEnv {
            start: Instant::now(),
        }
    }
}

impl Default for StdEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Env for StdEnv {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken clock; treat it as the epoch rather than panic.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn monotonic_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn monotonic_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn sleep_us(&self, us: u64) {
        std::thread::sleep(Duration::from_micros(us));
    }

    fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        // Without randomness, tokens could collide and the protocol would be unsafe; there is
        // no sensible fallback, and getrandom only fails on a broken platform.
        getrandom::fill(&mut bytes).expect("the platform's random source failed");
        u64::from_le_bytes(bytes)
    }
}
