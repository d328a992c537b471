//! A native contender: the protocol compiled natively, the kernel's flock, or the seed's
//! mkdir/rmdir lock, looping exactly like the bench plugin's `contend` mode and writing the
//! same log. Runs on a thread of the benchmark, or as a separate process (`lockbydir bench
//! worker`, hidden).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use lockbydir_protocol::notify::NotifyEnv;
use lockbydir_protocol::{Fairness, Lock, Options, Outcome, StdFs};

use super::flock::FlockLock;
use super::seed::SeedLock;
use super::sys::now_ns;

/// The lock every contender of one measurement uses.
pub const LOCK_NAME: &str = "bench";

/// The file the flock contenders lock, inside the lock directory.
pub const FLOCK_FILE: &str = "flock.lock";

/// Which native lock a contender uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NativeLock {
    /// `lockbydir_protocol::Lock` on `StdFs` with inotify wake-ups (as the guard API), default fairness.
    Protocol,
    /// The same, first come first served.
    ProtocolFifo,
    /// The same, with bounded fairness.
    ProtocolBounded,
    /// `flock(LOCK_EX)` / `flock(LOCK_UN)` on a file opened once.
    Flock,
    /// The seed's algorithm: `mkdir` / `rmdir` of `<name>.lockdir`, waiters polling.
    Seed,
}

/// One contender's settings (also the hidden `bench worker` command line).
#[derive(Args, Clone, Debug)]
pub struct ContendSpec {
    /// The native lock to contend for.
    #[arg(long, value_enum)]
    pub kind: NativeLock,
    /// The lock directory.
    #[arg(long)]
    pub lock_dir: PathBuf,
    /// The scratch directory: `ready/`, `go`, and the logs.
    #[arg(long)]
    pub work: PathBuf,
    /// This contender's name (its log is `<work>/<label>.log`).
    #[arg(long)]
    pub label: String,
    /// Busy hold time (µs).
    #[arg(long, default_value_t = 100)]
    pub hold_us: u64,
    /// Patience of each acquire (ms; flock's only in a process of its own).
    #[arg(long, default_value_t = u64::MAX)]
    pub patience_ms: u64,
    /// How often a seed-like waiter tries again (ms).
    #[arg(long, default_value_t = 30)]
    pub poll_ms: u64,
    /// Hold asleep instead of busy (as the hammering's sleepers do).
    #[arg(long)]
    pub hold_sleep: bool,
    /// Acquisitions to make at most (0: until the end of the window).
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
    /// How often to look for the go file (ms).
    #[arg(long, default_value_t = 1)]
    pub go_poll_ms: u64,
}

/// A lock as the contender loop sees it.
trait BenchLock {
    /// Wait for the lock; false if patience ran out.
    fn acquire(&mut self) -> anyhow::Result<bool>;
    fn release(&mut self) -> anyhow::Result<()>;
}

struct ProtocolLock(Lock<StdFs, NotifyEnv>);

impl BenchLock for ProtocolLock {
    fn acquire(&mut self) -> anyhow::Result<bool> {
        Ok(matches!(self.0.acquire()?, Outcome::Acquired(_)))
    }
    fn release(&mut self) -> anyhow::Result<()> {
        self.0.release()?;
        Ok(())
    }
}

impl BenchLock for FlockLock {
    fn acquire(&mut self) -> anyhow::Result<bool> {
        FlockLock::acquire(self)
    }
    fn release(&mut self) -> anyhow::Result<()> {
        FlockLock::release(self)
    }
}

impl BenchLock for SeedLock {
    fn acquire(&mut self) -> anyhow::Result<bool> {
        SeedLock::acquire(self)
    }
    fn release(&mut self) -> anyhow::Result<()> {
        SeedLock::release(self)
    }
}

/// The lock held by the benchmark itself while contenders wait (the protocol natively, or
/// flock), until [`HostHold::release`].
pub struct HostHold(Box<dyn BenchLock + Send>);

impl HostHold {
    /// Take lock [`LOCK_NAME`] (or the flock file) in `lock_dir`, which must be free.
    pub fn take(kind: NativeLock, lock_dir: &Path) -> anyhow::Result<Self> {
        let mut lock = open(kind, lock_dir, "bench-host", u64::MAX, 1)?;
        anyhow::ensure!(lock.acquire()?, "the benchmark could not take its own lock");
        Ok(HostHold(lock))
    }

    /// Let the lock go.
    pub fn release(mut self) -> anyhow::Result<()> {
        self.0.release()
    }
}

fn open(
    kind: NativeLock,
    lock_dir: &Path,
    label: &str,
    patience_ms: u64,
    poll_ms: u64,
) -> anyhow::Result<Box<dyn BenchLock + Send>> {
    let fairness = match kind {
        NativeLock::ProtocolFifo => Fairness::Fifo,
        NativeLock::ProtocolBounded => Fairness::Bounded,
        _ => Fairness::default(),
    };
    Ok(match kind {
        NativeLock::Protocol | NativeLock::ProtocolFifo | NativeLock::ProtocolBounded => {
            let options = Options {
                timeout_ms: 30_000,
                patience_ms,
                holder: label.to_owned(),
                fairness,
                ..Options::default()
            };
            // What the guard API gives Rust users: inotify wake-ups.
            let fs = StdFs::new(lock_dir);
            Box::new(ProtocolLock(Lock::new(
                fs,
                NotifyEnv::new(lock_dir),
                LOCK_NAME,
                options,
            )?))
        }
        NativeLock::Flock => Box::new(FlockLock::open(&lock_dir.join(FLOCK_FILE), patience_ms)?),
        NativeLock::Seed => Box::new(SeedLock::new(lock_dir, LOCK_NAME, poll_ms, patience_ms)),
    })
}

/// Run one contender to the end: open the lock, say ready, wait for go, loop, write the log.
pub fn run(spec: &ContendSpec) -> anyhow::Result<()> {
    let mut lock = open(
        spec.kind,
        &spec.lock_dir,
        &spec.label,
        spec.patience_ms,
        spec.poll_ms,
    )?;
    let until = wait_for_go(&spec.work, &spec.label, spec.go_poll_ms)?;
    let log = contend(lock.as_mut(), until, spec)?;
    let path = spec.work.join(format!("{}.log", spec.label));
    std::fs::write(&path, log).with_context(|| format!("write {}", path.display()))
}

/// Loop acquire, hold (busy, or asleep), release until `until_ns` (or `rounds`); the log
/// lines.
fn contend(lock: &mut dyn BenchLock, until_ns: u128, spec: &ContendSpec) -> anyhow::Result<String> {
    let hold = Duration::from_micros(spec.hold_us);
    let mut log = String::new();
    let mut done = 0;
    while now_ns() < until_ns && (spec.rounds == 0 || done < spec.rounds) {
        done += 1;
        let asked = now_ns();
        if !lock.acquire()? {
            log.push_str(&format!("gaveup {asked} {}\n", now_ns()));
            continue;
        }
        let got = now_ns();
        if spec.hold_sleep {
            std::thread::sleep(hold);
        } else {
            let end = Instant::now() + hold;
            while Instant::now() < end {
                std::hint::spin_loop();
            }
        }
        let releasing = now_ns();
        lock.release()?;
        log.push_str(&format!("acq {asked} {got} {releasing} {}\n", now_ns()));
    }
    Ok(log)
}

/// Create `<work>/ready/<label>`, then wait for `<work>/go`; returns its until-ns.
fn wait_for_go(work: &Path, label: &str, poll_ms: u64) -> anyhow::Result<u128> {
    std::fs::write(work.join("ready").join(label), "")?;
    let go = work.join("go");
    loop {
        if let Ok(text) = std::fs::read_to_string(&go) {
            return text
                .split_whitespace()
                .nth(1)
                .and_then(|t| t.parse().ok())
                .with_context(|| format!("{} holds {text:?}", go.display()));
        }
        std::thread::sleep(Duration::from_millis(poll_ms));
    }
}
