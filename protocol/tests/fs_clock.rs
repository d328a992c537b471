//! Rule (b) of the takeover (the filesystem's own clock) on real filesystems, whose
//! timestamps come from a coarse kernel clock: a directory's mtime can be *earlier* than a
//! clock reading taken before the change that set it.
//!
//! - `a_fast_clock_never_takes_over_before_the_holders_deadline`: a holder that never
//!   refreshes, a taker whose clock runs an hour ahead (so rule (a) passes at once and only
//!   rule (b) stands between them), many short trials on tmpfs and on the test's own
//!   filesystem; the takeover must never come while the holder's clock still reads at or
//!   before its deadline.
//! - `measure_mtime_lag` (ignored; run it with `--ignored --nocapture`): how far a
//!   directory's mtime lags a clock reading taken just before a rename in it, over many
//!   renames, which is the evidence for [`lockbydir_protocol::lock::FS_CLOCK_LAG_MS`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockbydir_protocol::{Env, Lock, Options, Outcome, StdEnv, StdFs};

/// Wall-clock time in ns since the epoch.
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos()
}

fn mtime_ns(path: &Path) -> u128 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("stat")
        .duration_since(UNIX_EPOCH)
        .expect("an mtime after 1970")
        .as_nanos()
}

/// Fresh scratch directories: one under `/dev/shm` (tmpfs) if there is one, one next to the
/// test binary (the build's own filesystem).
fn scratch_dirs(tag: &str) -> Vec<PathBuf> {
    let unique = format!("lockbydir-{tag}-{}-{}", std::process::id(), now_ns());
    let mut roots = Vec::new();
    if Path::new("/dev/shm").is_dir() {
        roots.push(PathBuf::from("/dev/shm"));
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    roots.push(exe.parent().expect("its directory").to_path_buf());
    let mut dirs: Vec<PathBuf> = Vec::new();
    for root in roots {
        let dir = root.join(&unique);
        if std::fs::create_dir(&dir).is_ok() {
            dirs.push(dir);
        }
    }
    dirs
}

/// Over `renames` renames in `dir`, each after `pause`: how often the directory's mtime was
/// earlier than a clock reading taken just before the rename, and by how much at most (ms).
fn mtime_lag(dir: &Path, renames: u64, pause: impl Fn(u64) -> Duration) -> (u64, f64) {
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir(&a).unwrap();
    let (mut max_ns, mut earlier) = (0u128, 0);
    for i in 0..renames {
        let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        std::thread::sleep(pause(i));
        let before = now_ns();
        std::fs::rename(from, to).unwrap();
        let mtime = mtime_ns(dir);
        if mtime < before {
            earlier += 1;
            max_ns = max_ns.max(before - mtime);
        }
    }
    let _ = std::fs::remove_dir(&a);
    let _ = std::fs::remove_dir(&b);
    (earlier, max_ns as f64 / 1e6)
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn measure_mtime_lag() {
    for dir in scratch_dirs("lag") {
        for (what, renames, pause) in [
            ("back to back", 100_000, Duration::ZERO),
            ("each after 5-9 ms idle", 1_000, Duration::from_millis(5)),
            ("each after 100 ms idle", 50, Duration::from_millis(100)),
        ] {
            let (earlier, max_ms) = mtime_lag(&dir, renames, |i| {
                pause + Duration::from_micros(i * 331 % 4_000).min(pause)
            });
            println!(
                "{}: {renames} renames {what}: the mtime was earlier than a clock reading \
                 taken before the rename {earlier} times ({:.1} %), by up to {max_ms:.3} ms",
                dir.display(),
                100.0 * earlier as f64 / renames as f64,
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The real clock, an hour ahead: a taker with it sees every deadline long past (rule (a)),
/// so only rule (b) can keep it out.
struct FastEnv(StdEnv);

impl Env for FastEnv {
    fn now_ms(&self) -> u64 {
        self.0.now_ms() + 3_600_000
    }
    fn monotonic_ms(&self) -> u64 {
        self.0.monotonic_ms()
    }
    fn sleep_ms(&self, ms: u64) {
        self.0.sleep_ms(ms)
    }
    fn random_u64(&self) -> u64 {
        self.0.random_u64()
    }
}

/// Another program busy on the filesystem: `stat` a directory, then change it. On Linux (6.13
/// on, "multigrain" timestamps) a change to an inode whose times were just read gets a
/// fine-grained timestamp, and every later coarse one is at least that. So while the taker
/// waits, this keeps its probes' mtimes almost exact, while the holder's rename, after a quiet
/// spell, got the coarse clock's time, a tick or more behind: the worst case for rule (b).
fn stir(side: &Path) {
    let child = side.join("x");
    let _ = std::fs::metadata(side);
    let _ = std::fs::create_dir(&child);
    let _ = std::fs::metadata(side);
    let _ = std::fs::remove_dir(&child);
}

/// Trials per filesystem.
const TRIALS: u64 = 40;

/// The holder's timeout in `trial` (ms): 20 to 50, mostly not a multiple of the kernel's
/// tick, so that the coarse clock's steps do not line up with the timeout.
fn timeout_ms(trial: u64) -> u64 {
    20 + trial * 7 % 31
}

#[test]
fn a_fast_clock_never_takes_over_before_the_holders_deadline() {
    let mut report = Vec::new();
    for dir in scratch_dirs("rule-b") {
        let mut early = Vec::new();
        for trial in 0..TRIALS {
            let name = format!("t{trial}");
            let options = |holder: &str| Options {
                timeout_ms: timeout_ms(trial),
                patience_ms: 0,
                holder: holder.into(),
                ..Options::default()
            };
            let mut holder = Lock::new(StdFs::new(&dir), StdEnv::new(), &name, options("holder"))
                .expect("valid options");
            // Make the lock and let go of it: the next acquire by this handle is then one clock
            // reading and one rename right after it, with nothing in between.
            let first = holder.acquire().expect("acquire");
            assert!(
                matches!(first, Outcome::Acquired(_)),
                "a fresh lock was busy"
            );
            holder.release().expect("release");
            // A quiet spell: the CPU goes idle, the kernel's coarse clock (which stamps mtimes)
            // stops ticking, and a rename just after waking up gets its stale time, several ms
            // behind a clock reading taken before it. Its length puts the rename at a
            // different phase of the tick in each trial.
            std::thread::sleep(Duration::from_micros(5_000 + trial * 331 % 4_000));
            let Outcome::Acquired(grant) = holder.acquire().expect("acquire") else {
                panic!("a free lock was busy");
            };
            // The holder never refreshes nor releases; it believes until its deadline.
            holder.abandon();
            let real = StdEnv::new();
            let side = dir.join(format!("side{trial}"));
            std::fs::create_dir(&side).expect("a side directory");
            let mut taker = Lock::new(
                StdFs::new(&dir),
                FastEnv(StdEnv::new()),
                &name,
                options("taker"),
            )
            .expect("valid options");
            let patience = std::time::Instant::now();
            loop {
                match taker.try_acquire().expect("try_acquire") {
                    Outcome::Acquired(_) => {
                        // Read after the takeover's rename: if the holder's clock still reads
                        // its deadline or less now, it did then.
                        let holder_clock = real.now_ms();
                        if holder_clock <= grant.deadline_ms {
                            early.push(format!(
                                "trial {trial}: taken over when the holder's clock read {} ms \
                                 before its deadline or less",
                                grant.deadline_ms - holder_clock
                            ));
                        }
                        break;
                    }
                    Outcome::Busy(_) => {
                        stir(&side);
                        // Generous: rule (b) needs the timeout plus its margins to pass.
                        assert!(
                            patience.elapsed() < Duration::from_secs(60),
                            "trial {trial}: never taken over"
                        );
                    }
                }
            }
            taker.abandon();
        }
        let _ = std::fs::remove_dir_all(&dir);
        if !early.is_empty() {
            report.push(format!(
                "{}: {} of {TRIALS} takeovers came while the holder still believed it held \
                 the lock:\n{}",
                dir.display(),
                early.len(),
                early.join("\n")
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}
