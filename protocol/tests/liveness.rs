//! Nothing left in a lockdir or a queue may wedge a lock silently: stray or non-canonical
//! names are reported as corrupt (with the path), filesystem errors as what the filesystem
//! said, tickets stop counting by the reader's clock, and one broken lockdir does not hide
//! the others.

mod hooked_fs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lockbydir_protocol::lock::MAX_TIMEOUT_MS;
use lockbydir_protocol::repair::{RepairError, Repaired};

use hooked_fs::{HookedFs, Hooks, NoClock};
use lockbydir_protocol::{
    Env, Error, Fs, FsError, Lock, LockState, Options, Outcome, StdEnv, StdFs, list_locks,
};

/// A real directory whose timestamps the protocol cannot see, so that the manual clock alone
/// decides expiry.
type NoClockFs = HookedFs<NoClock>;

/// A wall clock that only moves when told to or when someone sleeps, and a monotonic clock
/// of its own (so that a handle's wall clock can be set apart from the others').
#[derive(Clone)]
struct ManualEnv {
    now: Arc<AtomicU64>,
    offset: u64,
    seed: Arc<AtomicU64>,
    slept: Arc<Mutex<u64>>,
}

impl ManualEnv {
    fn new() -> Self {
        ManualEnv {
            now: Arc::new(AtomicU64::new(1_700_000_000_000)),
            offset: 0,
            seed: Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15)),
            slept: Arc::default(),
        }
    }
    /// The same clock, read `ms` ahead.
    fn ahead(&self, ms: u64) -> Self {
        ManualEnv {
            offset: ms,
            ..self.clone()
        }
    }
    fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Env for ManualEnv {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst) + self.offset
    }
    fn monotonic_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep_ms(&self, ms: u64) {
        *self.slept.lock().unwrap() += ms;
        self.advance(ms);
    }
    fn random_u64(&self) -> u64 {
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
            "lockbydir-liveness-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn mkdir(&self, path: &str) {
        std::fs::create_dir_all(self.0.join(path)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn patient(holder: &str, timeout_ms: u64, patience_ms: u64) -> Options {
    Options {
        timeout_ms,
        patience_ms,
        holder: holder.into(),
        ..Options::default()
    }
}

fn lock(dir: &TempDir, env: &ManualEnv, options: Options) -> Lock<NoClockFs, ManualEnv> {
    Lock::new(HookedFs::new(&dir.0, NoClock), env.clone(), "bed", options).unwrap()
}

/// A `held` name as the protocol writes it, with the given numbers.
fn held_name(fence: u64, deadline: u64, timeout: u64, token: &str, label: &str) -> String {
    format!("held.{fence}.1700000000000.{deadline}.{timeout}.{token}.{label}")
}

/// Names that are not the protocol's canonical state entries: alone in a lockdir, each one
/// must make every look report the lockdir corrupt at once, naming the lockdir and the name.
fn not_canonical() -> Vec<String> {
    vec![
        "garbage".into(),
        ".DS_Store".into(),
        // One above u64::MAX: no fence can follow it.
        "free.18446744073709551616".into(),
        // Parses, but re-encodes to another name (lower-case hex, `x` plain).
        held_name(3, 1_700_000_030_000, 30_000, "00000000DEADBEEF", "x"),
        held_name(3, 1_700_000_030_000, 30_000, "00000000deadbeef", "%78"),
        // A deadline no clock reaches, a timeout above the maximum.
        held_name(3, u64::MAX, 30_000, "00000000deadbeef", "x"),
        held_name(
            3,
            1_700_000_030_000,
            MAX_TIMEOUT_MS + 1,
            "00000000deadbeef",
            "x",
        ),
    ]
}

#[test]
fn a_lockdir_holding_only_names_the_protocol_never_writes_is_reported_corrupt_at_once() {
    for name in not_canonical() {
        let dir = TempDir::new("corrupt");
        dir.mkdir(&format!("bed.lockdir/{name}"));
        let env = ManualEnv::new();
        let mut waiter = lock(&dir, &env, patient("w", 5_000, 60_000));
        let got = waiter.acquire();
        let Err(Error::Corrupt { path, detail }) = &got else {
            panic!("`{name}`: expected a corrupt lockdir, got {got:?}");
        };
        assert_eq!(path, "bed.lockdir", "`{name}`");
        assert!(detail.contains(&name), "`{name}` not named in: {detail}");
        // No silent wait: it said so before any patience was spent.
        assert_eq!(*env.slept.lock().unwrap(), 0, "`{name}`: waited first");
        let seen = waiter.inspect();
        assert!(
            matches!(&seen, Err(Error::Corrupt { .. })),
            "`{name}`: inspect gave {seen:?}"
        );
    }
}

#[test]
fn foreign_names_next_to_one_valid_entry_are_ignored() {
    for name in not_canonical() {
        let dir = TempDir::new("foreign");
        dir.mkdir(&format!("bed.lockdir/{name}"));
        dir.mkdir("bed.lockdir/free.7");
        dir.mkdir("bed.lockdir/.nfs000000000001");
        let env = ManualEnv::new();
        let mut holder = lock(&dir, &env, patient("h", 5_000, 0));
        let got = holder.try_acquire();
        assert!(
            matches!(&got, Ok(Outcome::Acquired(g)) if g.fence == 8),
            "next to `{name}`: {got:?}"
        );
        holder.release().unwrap();
    }
}

/// Whether this process can read a directory it has no permission for (root can).
fn permissions_are_bypassed(dir: &TempDir) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.0.join("probe");
    std::fs::create_dir(&probe).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read_dir(&probe).is_ok();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir(&probe).unwrap();
    readable
}

/// The error of one look at lock `bed` through the real filesystem, as text.
fn error_of_a_look(dir: &TempDir) -> String {
    let mut lock = Lock::new(
        StdFs::new(&dir.0),
        StdEnv::new(),
        "bed",
        patient("w", 5_000, 0),
    )
    .unwrap();
    let got = lock.try_acquire();
    let Err(err) = got else {
        panic!("expected an error, got {got:?}")
    };
    let text = err.to_string();
    assert!(text.contains("bed.lockdir"), "no path in: {text}");
    assert!(
        !text.contains("kept failing"),
        "not what the fs said: {text}"
    );
    text
}

#[test]
fn a_lockdir_that_cannot_be_read_reports_what_the_filesystem_said() {
    // A file where the lockdir should be: ENOTDIR (or, creating over it, EEXIST).
    let dir = TempDir::new("notdir");
    std::fs::write(dir.0.join("bed.lockdir"), "").unwrap();
    let text = error_of_a_look(&dir);
    assert!(text.to_lowercase().contains("not a directory"), "{text}");

    // A symlink loop.
    let dir = TempDir::new("loop");
    std::os::unix::fs::symlink("bed.lockdir", dir.0.join("bed.lockdir")).unwrap();
    let text = error_of_a_look(&dir);
    assert!(text.contains("symbolic links"), "{text}");

    // No permission to list it.
    let dir = TempDir::new("eacces");
    if permissions_are_bypassed(&dir) {
        eprintln!("skipped: EACCES (this process bypasses permissions, as root does)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    dir.mkdir("bed.lockdir/free.0");
    let lockdir = dir.0.join("bed.lockdir");
    std::fs::set_permissions(&lockdir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let text = error_of_a_look(&dir);
    std::fs::set_permissions(&lockdir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(text.contains("Permission denied"), "{text}");
}

/// A filesystem that "crashes" its user (every call fails from then on, so nothing more
/// reaches the disk, as with SIGKILL) right after the first rename onto a marked entry.
#[derive(Clone, Default)]
struct DiesAfterMarking {
    dead: Arc<std::sync::atomic::AtomicBool>,
}

impl DiesAfterMarking {
    fn alive(&self) -> Result<(), FsError> {
        match self.dead.load(Ordering::SeqCst) {
            true => Err(FsError::new(
                lockbydir_protocol::FsErrorKind::Other,
                "killed",
            )),
            false => Ok(()),
        }
    }
}

impl Hooks for DiesAfterMarking {
    fn create_dir(&self, fs: &StdFs, path: &str) -> Result<(), FsError> {
        self.alive()?;
        fs.create_dir(path)
    }
    fn remove_dir(&self, fs: &StdFs, path: &str) -> Result<(), FsError> {
        self.alive()?;
        fs.remove_dir(path)
    }
    fn rename(&self, fs: &StdFs, from: &str, to: &str) -> Result<(), FsError> {
        self.alive()?;
        let done = fs.rename(from, to);
        if done.is_ok() && to.contains("/held+.") {
            self.dead.store(true, Ordering::SeqCst);
        }
        done
    }
    fn read_dir(&self, fs: &StdFs, path: &str) -> Result<Vec<String>, FsError> {
        self.alive()?;
        fs.read_dir(path)
    }
    fn modified_ms(&self, _fs: &StdFs, _path: &str) -> Result<Option<u64>, FsError> {
        Ok(None)
    }
    fn exists(&self, fs: &StdFs, path: &str) -> Result<bool, FsError> {
        self.alive()?;
        fs.exists(path)
    }
}

/// The tickets in `bed.queue`.
fn tickets(dir: &TempDir) -> Vec<String> {
    std::fs::read_dir(dir.0.join("bed.queue"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// The longest a dead ticket may hold up a waiter (ms, the waiter's clock): its lifetime
/// and the skew margin, and one longest pause between two looks.
fn longest_hold_up(options: &Options) -> u64 {
    lockbydir_protocol::lock::TICKET_LIFETIME_MS + options.max_clock_skew_ms + options.max_poll_ms
}

#[test]
fn a_ticket_claiming_a_far_future_expiry_holds_up_the_line_only_for_a_ticket_lifetime() {
    let dir = TempDir::new("forever-ticket");
    // Released while someone queued (marked), and that someone's ticket claims to count for
    // ever.
    dir.mkdir("bed.lockdir/free+.5");
    dir.mkdir("bed.queue/wait.1.00000000deadbeef.18446744073709551615");
    let env = ManualEnv::new();
    let options = patient("w", 5_000, 60_000);
    let mut waiter = lock(&dir, &env, options.clone());
    let start = env.now_ms();
    let got = waiter.acquire().unwrap();
    assert!(
        matches!(&got, Outcome::Acquired(g) if g.fence == 6),
        "{got:?}"
    );
    let waited = env.now_ms() - start;
    assert!(waited <= longest_hold_up(&options), "waited {waited} ms");
    assert!(
        tickets(&dir).is_empty(),
        "the dead ticket is left: {:?}",
        tickets(&dir)
    );
}

#[test]
fn the_ticket_of_a_killed_waiter_whose_clock_ran_an_hour_ahead_does_not_starve_the_line() {
    let dir = TempDir::new("ahead-ticket");
    let env = ManualEnv::new();
    // A timeout longer than the hour, so that the waiter's clock does not see it expired.
    // First come, first served: its release goes to the line, which the dead ticket heads
    // (a holder under bounded fairness would release it unmarked, for anyone).
    let fifo = Options {
        fairness: lockbydir_protocol::Fairness::Fifo,
        ..patient("h", 7_200_000, 0)
    };
    let mut holder = lock(&dir, &env, fifo);
    assert!(matches!(holder.try_acquire(), Ok(Outcome::Acquired(_))));
    // The waiter's clock runs an hour ahead; it queues, marks the holder's entry, and is
    // killed there: its ticket stays, claiming an expiry an hour away.
    let killed_fs = HookedFs::new(&dir.0, DiesAfterMarking::default());
    let mut killed = Lock::new(
        killed_fs,
        env.ahead(3_600_000),
        "bed",
        patient("k", 5_000, 60_000),
    )
    .unwrap();
    assert!(killed.acquire().is_err(), "the killed waiter carried on");
    assert_eq!(tickets(&dir).len(), 1, "the killed waiter left its ticket");
    holder.release().unwrap();
    // A later waiter, with a correct clock and patience enough, gets the free lock.
    let options = patient("late", 5_000, 30_000);
    let mut late = lock(&dir, &env, options.clone());
    let start = env.now_ms();
    let got = late.acquire().unwrap();
    assert!(
        matches!(&got, Outcome::Acquired(g) if g.fence == 2),
        "{got:?}"
    );
    let waited = env.now_ms() - start;
    assert!(waited <= longest_hold_up(&options), "waited {waited} ms");
    assert!(tickets(&dir).is_empty(), "{:?}", tickets(&dir));
}

#[test]
fn one_broken_lockdir_does_not_hide_the_other_locks() {
    let dir = TempDir::new("list");
    dir.mkdir("a.lockdir/free.1");
    dir.mkdir("b.lockdir/.DS_Store");
    std::fs::write(dir.0.join("c.lockdir"), "").unwrap();
    dir.mkdir("d.lockdir/free.4");
    let env = ManualEnv::new();
    let locks = list_locks(&HookedFs::new(&dir.0, NoClock), &env).unwrap();
    let names: Vec<_> = locks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert_eq!(locks[0].1, Ok(LockState::Free(1)));
    assert!(
        matches!(&locks[1].1, Err(Error::Corrupt { path, .. }) if path == "b.lockdir"),
        "{:?}",
        locks[1].1
    );
    assert!(
        matches!(&locks[2].1, Err(Error::Io { path, .. }) if path == "c.lockdir"),
        "{:?}",
        locks[2].1
    );
    assert_eq!(locks[3].1, Ok(LockState::Free(4)));
}

#[test]
fn a_lock_past_its_deadline_is_expired_only_once_a_waiter_could_take_it_over() {
    let dir = TempDir::new("expired");
    // Past its deadline by any clock, but written just now by the filesystem's clock (the
    // lockdir's mtime), with an hour's timeout: no waiter takes it over within the hour.
    dir.mkdir("bed.lockdir/held.1.1000.2000.3600000.00000000deadbeef.x");
    let state = lockbydir_protocol::inspect(
        &StdFs::new(&dir.0),
        &StdEnv::new(),
        &lockbydir_protocol::LockName::new("bed").unwrap(),
    )
    .unwrap();
    assert!(matches!(state, LockState::Held(_)), "{state:?}");
    // Where the filesystem keeps no timestamps, the own clock decides.
    let state = lockbydir_protocol::inspect(
        &HookedFs::new(&dir.0, NoClock),
        &StdEnv::new(),
        &lockbydir_protocol::LockName::new("bed").unwrap(),
    )
    .unwrap();
    assert!(matches!(state, LockState::Expired(_)), "{state:?}");
}

fn names_in(dir: &TempDir, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.0.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn repair(dir: &TempDir, env: &ManualEnv) -> Result<Repaired, RepairError> {
    lockbydir_protocol::repair::repair(
        &HookedFs::new(&dir.0, NoClock),
        env,
        &lockbydir_protocol::LockName::new("bed").unwrap(),
    )
}

#[test]
fn repair_makes_a_corrupt_lockdir_usable_and_keeps_the_fence() {
    let env = ManualEnv::new();
    // Past the deadlines of the entries below.
    env.advance(1_000);
    // Only foreign names: a file, and an edited entry (upper-case token) at fence 7.
    let dir = TempDir::new("repair-foreign");
    let edited = held_name(7, 1_700_000_000_500, 500, "00000000DEADBEEF", "x");
    dir.mkdir(&format!("bed.lockdir/{edited}"));
    std::fs::write(dir.0.join("bed.lockdir/.DS_Store"), "").unwrap();
    let done = repair(&dir, &env).unwrap();
    assert_eq!((done.entry.as_str(), done.fence), ("free.8", 8));
    assert_eq!(done.removed, [edited]);
    assert_eq!(done.left, [".DS_Store"]);
    assert_eq!(names_in(&dir, "bed.lockdir"), [".DS_Store", "free.8"]);
    let mut next = lock(&dir, &env, patient("n", 5_000, 0));
    assert!(
        matches!(next.try_acquire(), Ok(Outcome::Acquired(g)) if g.fence == 9),
        "the fence went on from the highest one seen"
    );

    // Two state entries, the held one past its deadline.
    let dir = TempDir::new("repair-two");
    dir.mkdir("bed.lockdir/free.3");
    dir.mkdir(&format!(
        "bed.lockdir/{}",
        held_name(5, 1_700_000_000_500, 500, "00000000deadbeef", "x")
    ));
    let done = repair(&dir, &env).unwrap();
    assert_eq!(done.fence, 6);
    assert_eq!(names_in(&dir, "bed.lockdir"), ["free.6"]);
}

#[test]
fn repair_refuses_when_the_lock_may_be_live_or_its_fence_cannot_be_kept() {
    let env = ManualEnv::new();
    let refused = |dir: &TempDir, env: &ManualEnv| {
        let before = names_in(dir, "bed.lockdir");
        let got = repair(dir, env);
        assert!(matches!(got, Err(RepairError::Refused(_))), "{got:?}");
        assert_eq!(names_in(dir, "bed.lockdir"), before, "changed on refusal");
        got.unwrap_err().to_string()
    };
    // Held until a minute from now (next to a second entry, so corrupt).
    let dir = TempDir::new("repair-live");
    dir.mkdir("bed.lockdir/free.3");
    dir.mkdir(&format!(
        "bed.lockdir/{}",
        held_name(5, env.now_ms() + 60_000, 60_000, "00000000deadbeef", "x")
    ));
    assert!(refused(&dir, &env).contains("looks held"));
    // Fences exhausted.
    let dir = TempDir::new("repair-exhausted");
    dir.mkdir("bed.lockdir/free.18446744073709551616");
    assert!(refused(&dir, &env).contains("restart at 1"));
    let dir = TempDir::new("repair-max");
    dir.mkdir("bed.lockdir/free.18446744073709551615");
    dir.mkdir("bed.lockdir/free.1");
    assert!(refused(&dir, &env).contains("restart at 1"));
    // Written just now by the filesystem's clock, with an hour's timeout: may be alive.
    let dir = TempDir::new("repair-recent");
    dir.mkdir("bed.lockdir/free.1");
    dir.mkdir(&format!(
        "bed.lockdir/{}",
        held_name(5, 2_000, 3_600_000, "00000000deadbeef", "x")
    ));
    let got = lockbydir_protocol::repair::repair(
        &StdFs::new(&dir.0),
        &StdEnv::new(),
        &lockbydir_protocol::LockName::new("bed").unwrap(),
    );
    assert!(
        matches!(&got, Err(RepairError::Refused(why)) if why.contains("may still be alive")),
        "{got:?}"
    );
    // Nothing to repair.
    let dir = TempDir::new("repair-fine");
    dir.mkdir("bed.lockdir/free.4");
    assert_eq!(
        repair(&dir, &env),
        Err(RepairError::NotCorrupt(LockState::Free(4)))
    );
}
