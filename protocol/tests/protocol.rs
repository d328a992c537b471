//! The protocol on a real directory: acquire, contention, release, refresh, expiry, late
//! release after takeover, and name and option validation. Time is a manual clock, so expiry
//! is tested without waiting.

mod hooked_fs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hooked_fs::{HookedFs, Hooks, NoClock};
use lockbydir_protocol::{
    Env, Error, Fs, FsError, Lock, LockState, NameError, Options, Outcome, Released, StdEnv, StdFs,
    list_locks,
};

/// A real directory whose timestamps the protocol cannot see, so that the manual clock alone
/// decides expiry (the filesystem's clock would say every lock is fresh).
type NoClockFs = HookedFs<NoClock>;

/// A clock that only moves when told to (or when someone sleeps), shared by all handles.
#[derive(Clone)]
struct ManualEnv {
    now: Arc<AtomicU64>,
    seed: Arc<AtomicU64>,
    slept: Arc<Mutex<Vec<u64>>>,
}

impl ManualEnv {
    fn new() -> Self {
        ManualEnv {
            now: Arc::new(AtomicU64::new(1_000_000)),
            seed: Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15)),
            slept: Arc::default(),
        }
    }
    fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Env for ManualEnv {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn monotonic_ms(&self) -> u64 {
        self.now_ms()
    }
    fn sleep_ms(&self, ms: u64) {
        self.slept.lock().unwrap().push(ms);
        self.advance(ms);
    }
    fn random_u64(&self) -> u64 {
        // splitmix64: distinct, deterministic tokens.
        let z = self.seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A fresh, empty directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockbydir-protocol-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts(holder: &str, timeout_ms: u64) -> Options {
    Options {
        timeout_ms,
        patience_ms: 0,
        holder: holder.into(),
        ..Options::default()
    }
}

fn open(
    dir: &TempDir,
    env: &ManualEnv,
    holder: &str,
    timeout_ms: u64,
) -> Lock<NoClockFs, ManualEnv> {
    Lock::new(
        HookedFs::new(&dir.0, NoClock),
        env.clone(),
        "bed",
        opts(holder, timeout_ms),
    )
    .unwrap()
}

fn acquired(outcome: Outcome) -> lockbydir_protocol::Grant {
    match outcome {
        Outcome::Acquired(grant) => grant,
        Outcome::Busy(h) => panic!("expected to acquire, but busy (holder {h:?})"),
    }
}

#[test]
fn acquire_creates_the_lockdir_with_one_held_entry() {
    let dir = TempDir::new("acquire");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 5_000);
    let grant = acquired(a.try_acquire().unwrap());
    assert_eq!(grant.fence, 1);
    assert_eq!(grant.deadline_ms, env.now_ms() + 5_000);
    assert_eq!(grant.took_over, None);
    assert_eq!(
        dir.entries(""),
        ["bed.lockdir"],
        "no staging directory is left"
    );
    let inside = dir.entries("bed.lockdir");
    assert_eq!(inside.len(), 1);
    assert!(inside[0].starts_with("held.1."), "{inside:?}");
    assert!(inside[0].ends_with(".alice"), "{inside:?}");
}

#[test]
fn a_held_lock_is_busy_for_others_and_names_its_holder() {
    let dir = TempDir::new("busy");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 5_000);
    let mut b = open(&dir, &env, "bob", 5_000);
    acquired(a.try_acquire().unwrap());
    match b.try_acquire().unwrap() {
        Outcome::Busy(Some(h)) => {
            assert_eq!(h.label, "alice");
            assert_eq!(h.timeout_ms, 5_000);
        }
        other => panic!("bob should see alice holding: {other:?}"),
    }
    assert_eq!(a.try_acquire(), Err(Error::AlreadyHeld));
}

#[test]
fn release_frees_the_lock_and_fences_keep_growing() {
    let dir = TempDir::new("release");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 5_000);
    let mut b = open(&dir, &env, "bob", 5_000);
    assert_eq!(acquired(a.try_acquire().unwrap()).fence, 1);
    assert_eq!(a.release(), Ok(Released::InTime));
    assert_eq!(a.inspect(), Ok(LockState::Free(1)));
    assert_eq!(a.release(), Err(Error::NotHeld));
    assert_eq!(a.refresh(), Err(Error::NotHeld));
    assert_eq!(acquired(b.try_acquire().unwrap()).fence, 2);
    assert_eq!(
        a.refresh(),
        Err(Error::NotHeld),
        "not ours: not held, not compromised"
    );
    b.release().unwrap();
    assert_eq!(acquired(a.try_acquire().unwrap()).fence, 3);
}

#[test]
fn refresh_moves_the_deadline_and_keeps_others_out() {
    let dir = TempDir::new("refresh");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 1_000);
    let mut b = open(&dir, &env, "bob", 1_000);
    let first = acquired(a.try_acquire().unwrap()).deadline_ms;
    env.advance(900);
    let renewed = a.refresh().unwrap();
    assert_eq!(renewed, first + 900);
    env.advance(900); // past the first deadline, before the renewed one
    assert!(matches!(b.try_acquire().unwrap(), Outcome::Busy(Some(_))));
    assert!(matches!(a.inspect().unwrap(), LockState::Held(h) if h.deadline_ms == renewed));
}

#[test]
fn an_expired_lock_is_taken_over_with_a_higher_fence() {
    let dir = TempDir::new("expiry");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 1_000);
    let mut b = open(&dir, &env, "bob", 60_000);
    acquired(a.try_acquire().unwrap());
    env.advance(1_000); // exactly at the deadline: still alice's
    assert!(matches!(b.try_acquire().unwrap(), Outcome::Busy(Some(_))));
    env.advance(1);
    assert!(matches!(b.inspect().unwrap(), LockState::Expired(h) if h.label == "alice"));
    let grant = acquired(b.try_acquire().unwrap());
    assert_eq!(grant.fence, 2);
    assert_eq!(grant.took_over.map(|h| h.label), Some("alice".into()));
    // bob's own, longer timeout now governs.
    env.advance(30_000);
    assert!(matches!(a.inspect().unwrap(), LockState::Held(h) if h.label == "bob"));
}

#[test]
fn a_late_release_after_takeover_changes_nothing_and_says_compromised() {
    let dir = TempDir::new("late-release");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 1_000);
    let mut b = open(&dir, &env, "bob", 5_000);
    acquired(a.try_acquire().unwrap());
    env.advance(1_001);
    acquired(b.try_acquire().unwrap());
    let before = dir.entries("bed.lockdir");
    match a.release() {
        Err(Error::Compromised { fence, now_held_by }) => {
            assert_eq!(fence, 1);
            assert_eq!(
                now_held_by.map(|h| (h.label, h.fence)),
                Some(("bob".into(), 2))
            );
        }
        other => panic!("alice's late release must report compromise: {other:?}"),
    }
    assert_eq!(
        dir.entries("bed.lockdir"),
        before,
        "bob's lock is untouched"
    );
    assert_eq!(a.fence(), None, "alice no longer believes she holds it");
    assert_eq!(a.release(), Err(Error::NotHeld));
}

#[test]
fn a_late_refresh_after_takeover_says_compromised() {
    let dir = TempDir::new("late-refresh");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 1_000);
    let mut b = open(&dir, &env, "bob", 5_000);
    acquired(a.try_acquire().unwrap());
    env.advance(2_000);
    acquired(b.try_acquire().unwrap());
    assert!(matches!(
        a.refresh(),
        Err(Error::Compromised { fence: 1, .. })
    ));
    assert!(matches!(b.inspect().unwrap(), LockState::Held(h) if h.label == "bob"));
}

#[test]
fn a_late_release_nobody_took_over_is_reported_late() {
    let dir = TempDir::new("late-ok");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 1_000);
    acquired(a.try_acquire().unwrap());
    env.advance(5_000);
    assert_eq!(a.release(), Ok(Released::Late));
    assert_eq!(a.inspect(), Ok(LockState::Free(1)));
}

#[test]
fn dropping_a_holding_handle_releases_it() {
    let dir = TempDir::new("drop");
    let env = ManualEnv::new();
    {
        let mut a = open(&dir, &env, "alice", 5_000);
        acquired(a.try_acquire().unwrap());
    }
    let a = open(&dir, &env, "alice", 5_000);
    assert_eq!(a.inspect(), Ok(LockState::Free(1)));
}

#[test]
fn a_waiter_sleeps_until_the_holders_deadline_not_blindly() {
    let dir = TempDir::new("wait");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 10_000);
    acquired(a.try_acquire().unwrap());
    a.abandon(); // alice crashes while holding
    let mut b = Lock::new(
        HookedFs::new(&dir.0, NoClock),
        env.clone(),
        "bed",
        Options {
            patience_ms: 60_000,
            min_poll_ms: 1,
            max_poll_ms: 200,
            ..opts("bob", 1_000)
        },
    )
    .unwrap();
    let start = env.now_ms();
    let grant = acquired(b.acquire().unwrap());
    assert_eq!(grant.took_over.map(|h| h.label), Some("alice".into()));
    let waited = env.now_ms() - start;
    assert!(
        waited > 10_000,
        "bob took over before alice's deadline ({waited} ms)"
    );
    assert!(
        waited <= 10_001,
        "bob overslept alice's deadline ({waited} ms)"
    );
    let slept = env.slept.lock().unwrap().clone();
    assert!(
        slept.iter().all(|&ms| ms <= 200),
        "a pause exceeded max-poll: {slept:?}"
    );
}

#[test]
fn patience_runs_out_with_busy() {
    let dir = TempDir::new("patience");
    let env = ManualEnv::new();
    let mut a = open(&dir, &env, "alice", 60_000);
    acquired(a.try_acquire().unwrap());
    let mut b = Lock::new(
        HookedFs::new(&dir.0, NoClock),
        env.clone(),
        "bed",
        Options {
            patience_ms: 3_000,
            max_poll_ms: 500,
            ..opts("bob", 1_000)
        },
    )
    .unwrap();
    let start = env.now_ms();
    assert!(matches!(b.acquire().unwrap(), Outcome::Busy(Some(h)) if h.label == "alice"));
    assert_eq!(
        env.now_ms() - start,
        3_000,
        "gave up exactly when patience ran out"
    );
}

#[test]
fn bad_names_and_options_are_refused_before_touching_the_disk() {
    let dir = TempDir::new("bad");
    let env = ManualEnv::new();
    let fs = HookedFs::new(&dir.0, NoClock);
    for (name, expected) in [
        ("", NameError::Empty),
        ("..", NameError::Dots),
        ("../escape", NameError::BadChar('/')),
        ("a\0", NameError::BadChar('\0')),
    ] {
        let err = Lock::new(fs.clone(), env.clone(), name, Options::default()).err();
        assert_eq!(err, Some(Error::InvalidName(expected)), "{name:?}");
    }
    for bad in [
        Options {
            timeout_ms: 0,
            ..Options::default()
        },
        Options {
            min_poll_ms: 0,
            ..Options::default()
        },
        Options {
            min_poll_ms: 10,
            max_poll_ms: 5,
            ..Options::default()
        },
    ] {
        let err = Lock::new(fs.clone(), env.clone(), "ok", bad.clone()).err();
        assert!(
            matches!(err, Some(Error::InvalidOption(_))),
            "{bad:?}: {err:?}"
        );
    }
    assert!(dir.entries("").is_empty());
}

#[test]
fn an_empty_lockdir_from_the_original_script_is_replaced() {
    let dir = TempDir::new("legacy");
    let env = ManualEnv::new();
    std::fs::create_dir(dir.0.join("bed.lockdir")).unwrap();
    let mut a = open(&dir, &env, "alice", 5_000);
    assert_eq!(a.inspect(), Ok(LockState::Absent));
    assert_eq!(acquired(a.try_acquire().unwrap()).fence, 1);
}

#[test]
fn two_state_entries_are_reported_as_corrupt() {
    let dir = TempDir::new("corrupt");
    let env = ManualEnv::new();
    std::fs::create_dir_all(dir.0.join("bed.lockdir/free.1")).unwrap();
    std::fs::create_dir_all(dir.0.join("bed.lockdir/free.2")).unwrap();
    let mut a = open(&dir, &env, "alice", 5_000);
    let err = a.try_acquire().unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if path == "bed.lockdir"),
        "{err:?}"
    );
    assert!(err.to_string().contains("lockbydir repair bed"), "{err}");
}

#[test]
fn list_locks_shows_every_lock_with_its_state() {
    let dir = TempDir::new("list");
    let env = ManualEnv::new();
    let fs = HookedFs::new(&dir.0, NoClock);
    let mut bed = open(&dir, &env, "alice", 5_000);
    acquired(bed.try_acquire().unwrap());
    let mut door = Lock::new(fs.clone(), env.clone(), "door", opts("bob", 5_000)).unwrap();
    acquired(door.try_acquire().unwrap());
    door.release().unwrap();
    std::fs::create_dir(dir.0.join("not-a-lock")).unwrap();
    let locks = list_locks(&fs, &env).unwrap();
    let names: Vec<_> = locks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["bed", "door"]);
    assert!(matches!(&locks[0].1, Ok(LockState::Held(h)) if h.label == "alice"));
    assert_eq!(locks[1].1, Ok(LockState::Free(1)));
}

/// Real threads, real clock: many handles race to create and take the same lock; a plain
/// read-modify-write counter under the lock must end exact.
#[test]
fn threads_hammering_one_lock_never_overlap() {
    let dir = Arc::new(TempDir::new("hammer"));
    const THREADS: usize = 8;
    const ROUNDS: usize = 50;
    let counter = dir.0.join("counter");
    std::fs::write(&counter, "0").unwrap();
    let inside = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (dir, counter, inside) = (dir.clone(), counter.clone(), inside.clone());
            std::thread::spawn(move || {
                let options = Options {
                    timeout_ms: 60_000,
                    holder: format!("thread-{t}"),
                    ..Options::default()
                };
                let mut lock =
                    Lock::new(StdFs::new(&dir.0), StdEnv::new(), "bed", options).unwrap();
                for _ in 0..ROUNDS {
                    acquired(lock.acquire().unwrap());
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    let n: u64 = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
                    std::fs::write(&counter, (n + 1).to_string()).unwrap();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(lock.release(), Ok(Released::InTime));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n: usize = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
    assert_eq!(n, THREADS * ROUNDS);
    let inside = dir.entries("bed.lockdir");
    // Marked or not: the last one served may have taken it as first in line, marked.
    let n = THREADS * ROUNDS;
    assert!(
        inside == [format!("free.{n}")] || inside == [format!("free+.{n}")],
        "{inside:?}"
    );
    let mut top = dir.entries("");
    top.retain(|n| n != "bed.queue");
    assert_eq!(
        top,
        ["bed.lockdir", "counter"],
        "only the lockdir, the queue directory and the counter"
    );
    assert!(
        !dir.0.join("bed.queue").exists() || dir.entries("bed.queue").is_empty(),
        "every waiter took its ticket back: {:?}",
        dir.entries("bed.queue")
    );
}

/// Borg's rule: a waiter whose clock runs an hour ahead must not take a live lock, because by
/// the filesystem's own clock the lock is fresh; once the filesystem's clock agrees that the
/// timeout has passed, it may.
#[test]
fn a_waiter_whose_clock_runs_ahead_cannot_take_a_live_lock() {
    let dir = TempDir::new("skew");
    let mut alice =
        Lock::new(StdFs::new(&dir.0), StdEnv::new(), "bed", opts("alice", 300)).unwrap();
    acquired(alice.try_acquire().unwrap());
    alice.abandon();
    let fast = ManualEnv::new();
    fast.now
        .store(StdEnv::new().now_ms() + 3_600_000, Ordering::SeqCst);
    let mut bob = Lock::new(StdFs::new(&dir.0), fast.clone(), "bed", opts("bob", 1_000)).unwrap();
    assert!(
        matches!(bob.try_acquire().unwrap(), Outcome::Busy(Some(h)) if h.label == "alice"),
        "took a lock that is fresh by the filesystem's clock"
    );
    assert_eq!(dir.entries("").len(), 1, "the clock probe was cleaned up");
    // Let the filesystem's clock pass alice's 300 ms timeout.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let grant = acquired(bob.try_acquire().unwrap());
    assert_eq!(grant.took_over.map(|h| h.label), Some("alice".into()));
}

/// What a crashed process leaves (a staging directory of a lockdir being created, a probe of the
/// filesystem's clock) is removed at the next takeover once it is old; fresh ones, which may
/// be in use, stay.
#[test]
fn a_takeover_sweeps_old_scratch_directories_left_by_crashes() {
    let dir = TempDir::new("sweep");
    let old_staging = ".bed.0123456789abcdef.staging";
    let old_probe = ".bed.fedcba9876543210.probe";
    let fresh_probe = ".bed.00000000000000ff.probe";
    let other_lock = ".bed.x.0123456789abcdef.staging";
    for d in [old_probe, fresh_probe, other_lock] {
        std::fs::create_dir(dir.0.join(d)).unwrap();
    }
    std::fs::create_dir_all(dir.0.join(old_staging).join("free.0")).unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for d in [old_staging, old_probe, other_lock] {
        std::fs::File::open(dir.0.join(d))
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
    }
    let mut alice = Lock::new(StdFs::new(&dir.0), StdEnv::new(), "bed", opts("alice", 1)).unwrap();
    acquired(alice.try_acquire().unwrap());
    alice.abandon();
    // Rule (b) waits out the timeout plus the filesystem clock's margin: look until it passes.
    let mut bob = Lock::new(StdFs::new(&dir.0), StdEnv::new(), "bed", opts("bob", 1_000)).unwrap();
    let start = std::time::Instant::now();
    let grant = loop {
        match bob.try_acquire().unwrap() {
            Outcome::Acquired(grant) => break grant,
            Outcome::Busy(_) if start.elapsed() < std::time::Duration::from_secs(30) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Outcome::Busy(h) => panic!("never taken over from {h:?}"),
        }
    };
    assert!(grant.took_over.is_some());
    assert_eq!(dir.entries(""), [fresh_probe, other_lock, "bed.lockdir"]);
}

/// A lock whose state entry `entry` is planted by hand, on the manual clock.
fn planted(tag: &str, entry: &str) -> (TempDir, ManualEnv) {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.0.join("bed.lockdir").join(entry)).unwrap();
    (dir, ManualEnv::new())
}

/// Every way to ask for `dir`'s lock is refused because its fences are exhausted, and
/// nothing in the lockdir changes.
fn refuses_for_exhausted_fences(dir: &TempDir, env: &ManualEnv, entry: &str) {
    let mut waiter = open(dir, env, "waiter", 1_000);
    let mut patient = Lock::new(
        HookedFs::new(&dir.0, NoClock),
        env.clone(),
        "bed",
        Options {
            patience_ms: 5_000,
            ..opts("patient", 1_000)
        },
    )
    .unwrap();
    for (how, result) in [
        ("try_acquire", waiter.try_acquire()),
        ("acquire", patient.acquire()),
    ] {
        let refused =
            result.expect_err(&format!("{how} granted a lock whose fences are exhausted"));
        assert_eq!(
            refused,
            Error::FencesExhausted {
                path: "bed.lockdir".into()
            },
            "{how}"
        );
        assert!(refused.to_string().contains("bed.lockdir"), "{refused}");
    }
    assert_eq!(dir.entries("bed.lockdir"), [entry]);
    assert!(waiter.holder().is_none() && patient.holder().is_none());
}

#[test]
fn a_lock_at_the_last_fence_refuses_to_grant_and_renames_nothing() {
    let max = u64::MAX;
    let free = format!("free.{max}");
    let (dir, env) = planted("fences-free", &free);
    refuses_for_exhausted_fences(&dir, &env, &free);

    // Held at the last fence and long expired: no takeover either.
    let held = format!("held.{max}.1000000.1001000.1000.00000000deadbeef.gone");
    let (dir, env) = planted("fences-held", &held);
    env.advance(3_600_000);
    refuses_for_exhausted_fences(&dir, &env, &held);
}

#[test]
fn the_last_fence_is_handed_out_once() {
    let (dir, env) = planted("fences-last", &format!("free.{}", u64::MAX - 1));
    let mut last = open(&dir, &env, "last", 1_000);
    assert_eq!(acquired(last.try_acquire().unwrap()).fence, u64::MAX);
    last.release().unwrap();
    // The same handle's next acquire tries `free.MAX` without listing: refused as well.
    assert!(matches!(
        last.try_acquire(),
        Err(Error::FencesExhausted { .. })
    ));
    refuses_for_exhausted_fences(&dir, &env, &format!("free.{}", u64::MAX));
}

/// A real directory whose mtimes are kept on the manual clock instead of the kernel's: every
/// change stamps the directories it changes with the manual clock's time, as a filesystem
/// with an exact clock would.
#[derive(Clone)]
struct ManualClock {
    env: ManualEnv,
    mtimes: Arc<Mutex<std::collections::HashMap<String, u64>>>,
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(dir, _)| dir)
}

impl ManualClock {
    fn fs(dir: &std::path::Path, env: &ManualEnv) -> HookedFs<Self> {
        let clock = ManualClock {
            env: env.clone(),
            mtimes: Arc::default(),
        };
        HookedFs::new(dir, clock)
    }
    fn stamp(&self, paths: &[&str]) {
        let now = self.env.now_ms();
        let mut mtimes = self.mtimes.lock().unwrap();
        for p in paths {
            mtimes.insert((*p).to_owned(), now);
        }
    }
}

impl Hooks for ManualClock {
    fn create_dir(&self, fs: &StdFs, path: &str) -> Result<(), FsError> {
        fs.create_dir(path)?;
        self.stamp(&[path, parent_of(path)]);
        Ok(())
    }
    fn remove_dir(&self, fs: &StdFs, path: &str) -> Result<(), FsError> {
        fs.remove_dir(path)?;
        self.stamp(&[parent_of(path)]);
        Ok(())
    }
    fn rename(&self, fs: &StdFs, from: &str, to: &str) -> Result<(), FsError> {
        fs.rename(from, to)?;
        let moved = self.mtimes.lock().unwrap().get(from).copied();
        self.stamp(&[parent_of(from), parent_of(to)]);
        if let Some(m) = moved {
            self.mtimes.lock().unwrap().insert(to.to_owned(), m);
        }
        Ok(())
    }
    fn modified_ms(&self, fs: &StdFs, path: &str) -> Result<Option<u64>, FsError> {
        fs.modified_ms(path)?;
        Ok(self.mtimes.lock().unwrap().get(path).copied())
    }
}

#[test]
fn a_waiters_mark_does_not_delay_the_takeover_of_a_dead_holder() {
    let dir = TempDir::new("mark-delay");
    let env = ManualEnv::new();
    let fs = ManualClock::fs(&dir.0, &env);
    let written = env.now_ms();
    let mut dead = Lock::new(fs.clone(), env.clone(), "bed", opts("dead", 1_000)).unwrap();
    let deadline = acquired(dead.try_acquire().unwrap()).deadline_ms;
    dead.abandon();
    // A waiter arrives at 0.9 of the timeout and marks the dead holder's entry (which moves
    // the lockdir's mtime), then waits for the deadline.
    env.advance(900);
    let mut waiter = Lock::new(
        fs.clone(),
        env.clone(),
        "bed",
        Options {
            patience_ms: 10_000,
            ..opts("waiter", 1_000)
        },
    )
    .unwrap();
    let grant = acquired(waiter.acquire().unwrap());
    let took_over = grant.took_over.expect("a takeover");
    assert!(took_over.waiters, "the waiter did not mark the entry");
    // The marked name records when the holder wrote its entry, read before the mark.
    assert_eq!(took_over.written_ms, Some(written));
    // Rule (b) counts from when the holder wrote its deadline, not from the mark: the
    // takeover comes once the filesystem's clock is past the deadline plus its margin (and
    // a poll), not a whole timeout after the mark.
    let taken_at = grant.deadline_ms - 1_000;
    let prompt = deadline + lockbydir_protocol::lock::FS_CLOCK_LAG_MS + 100;
    assert!(
        taken_at <= prompt,
        "taken over at {taken_at}, {} ms after the deadline {deadline}: the mark at {} \
         delayed it",
        taken_at - deadline,
        written + 900
    );
}
