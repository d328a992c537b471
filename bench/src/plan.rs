//! How much to measure: the quick, full and smoke plans.

use serde::Serialize;

/// Repetitions, sizes and durations of one benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `quick`, `full` or `smoke`.
    pub mode: &'static str,
    /// Repetitions of each uncontended measurement (interleaved across variants).
    pub uncontended_runs: usize,
    /// Operations per uncontended measurement, for the slowest variants; the fast ones do
    /// `fast_factor` times more.
    pub uncontended_ops: u64,
    /// How many more operations the fast variants (mkdir+rmdir, flock) do per measurement.
    pub fast_factor: u64,
    /// Contender counts of the handover benchmark.
    pub contenders: Vec<usize>,
    /// Repetitions of each handover measurement.
    pub contended_runs: usize,
    /// How long the contenders loop in one handover measurement (ms).
    pub window_ms: u64,
    /// Acquisitions in the first this many ms after the start are not analysed (ms).
    pub settle_ms: u64,
    /// How long each holder holds the lock, busy (µs).
    pub hold_us: u64,
    /// The contender count at which the peers (seed-like, lockbydir's polling fallback) are
    /// measured too: the count the targets name.
    pub peer_contenders: usize,
    /// Waiting CPU: how long the benchmark holds the lock while one waiter process (or
    /// `peer_contenders` waiting plugins) waits (ms).
    pub waiting_cpu_ms: u64,
    /// Repetitions of each waiting-CPU measurement.
    pub waiting_cpu_runs: usize,
    /// The last of `peer_contenders` waiters: how long the benchmark holds the lock before it
    /// lets go (ms).
    pub after_hold_ms: u64,
    /// Whether separate processes are measured too (besides threads in one host).
    pub processes: bool,
    /// Whether each contended configuration of processes is run once more under `strace`,
    /// for its system calls per acquisition.
    pub syscalls: bool,
    /// Repetitions of each start-up measurement.
    pub startup_runs: usize,
    /// Repetitions of the compile without cache (slow: seconds each).
    pub compile_runs: usize,
    /// Idle plugin instances whose memory is measured.
    pub idle_plugins: usize,
    /// Repetitions of the massive hammering.
    pub hammer_runs: usize,
    /// Contenders of the massive hammering.
    pub hammer_contenders: usize,
    /// Their hold time (ms, asleep like the seed's sleepers).
    pub hammer_hold_ms: u64,
    /// Their patience (ms).
    pub hammer_patience_ms: u64,
    /// Whether the hammering runs on every directory or only the first.
    pub hammer_every_dir: bool,
    /// How many tasks of one WASI 0.3 plugin instance wait at once (besides one alone).
    pub async_waits: usize,
    /// How long the async waits' tasks all wait before the release (ms): longer than half a
    /// ticket's lifetime, so that every waiter renews its ticket while the CPU is counted.
    pub async_wait_ms: u64,
}

impl Plan {
    /// About a minute on 2 cores.
    pub fn quick() -> Self {
        Plan {
            mode: "quick",
            uncontended_runs: 5,
            uncontended_ops: 500,
            fast_factor: 4,
            contenders: vec![2, 8, 32, 200],
            contended_runs: 3,
            window_ms: 300,
            settle_ms: 20,
            hold_us: 100,
            peer_contenders: 8,
            waiting_cpu_ms: 2_000,
            waiting_cpu_runs: 1,
            after_hold_ms: 200,
            processes: true,
            syscalls: true,
            startup_runs: 11,
            compile_runs: 1,
            idle_plugins: 20,
            hammer_runs: 1,
            hammer_contenders: 200,
            hammer_hold_ms: 5,
            hammer_patience_ms: 1_000,
            hammer_every_dir: false,
            async_waits: 1_000,
            async_wait_ms: 2_500,
        }
    }

    /// Several minutes: more repetitions, longer windows.
    pub fn full() -> Self {
        Plan {
            mode: "full",
            uncontended_runs: 11,
            uncontended_ops: 2_000,
            contended_runs: 3,
            window_ms: 2_000,
            waiting_cpu_ms: 10_000,
            startup_runs: 21,
            compile_runs: 3,
            idle_plugins: 50,
            hammer_runs: 3,
            hammer_every_dir: true,
            ..Plan::quick()
        }
    }

    /// Seconds: only shows that every part runs (the numbers mean little).
    pub fn smoke() -> Self {
        Plan {
            mode: "smoke",
            uncontended_runs: 1,
            uncontended_ops: 50,
            contenders: vec![2],
            contended_runs: 1,
            window_ms: 50,
            settle_ms: 0,
            peer_contenders: 2,
            waiting_cpu_ms: 50,
            after_hold_ms: 20,
            startup_runs: 1,
            idle_plugins: 2,
            hammer_runs: 1,
            hammer_contenders: 3,
            hammer_hold_ms: 1,
            hammer_patience_ms: 200,
            async_waits: 20,
            async_wait_ms: 50,
            ..Plan::quick()
        }
    }
}
