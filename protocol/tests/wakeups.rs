//! Waiting with wake-ups, on a real directory with real threads: an [`Env`] whose
//! `sleep_until_changed` is really woken when the watched entry is renamed or removed (the
//! test's [`Fs`] tells a shared [`Watches`] of every rename and removal it makes), as a host
//! with inotify would.
//!
//! Checked: waiters are still served in the order they came; a release wakes the first in line
//! and nobody else; a waiter that gives up hands its place on at once (its successor is woken
//! by the withdrawal of its ticket); with every wake-up lost, everyone still gets in.
//!
//! No assertion is about time: threads wait for what they can see (a ticket, a waiter asleep
//! on a given name). `looks_while_waiting` (ignored, run with `--ignored --nocapture`) prints
//! how many looks waiters make with and without wake-ups.

mod hooked_fs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hooked_fs::{HookedFs, Hooks};
use lockbydir_protocol::{Env, Fs, FsError, Lock, Options, Outcome, Released, StdEnv, StdFs};

/// The watches of every waiter, and what woke whom.
#[derive(Default)]
struct Watches {
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchState {
    /// Each watch: who waits, on which path, and whether that path changed since.
    watches: BTreeMap<u64, Watch>,
    next: u64,
    /// Every wake-up by a change: (who, the path that changed).
    woken: Vec<(String, String)>,
    /// Who sleeps on what now.
    asleep: BTreeMap<String, String>,
    /// How many sleeps until a change each one began (each costs the lockbydir host one
    /// `stat`, which the watch makes before the sleep).
    watched: BTreeMap<String, u64>,
    /// How many plain sleeps of under a millisecond (the polling fallback's 200 µs looks)
    /// each one took.
    polls: BTreeMap<String, u64>,
}

struct Watch {
    who: String,
    path: String,
    fired: bool,
}

impl Watches {
    /// `path` was renamed away or removed: wake whoever watches exactly it.
    fn gone(&self, path: &str) {
        let mut st = self.state.lock().unwrap();
        let mut any = false;
        for watch in st.watches.values_mut().filter(|w| w.path == path) {
            watch.fired = true;
            any = true;
        }
        if any {
            self.changed.notify_all();
        }
    }

    /// Who was woken by a change of `path` (of a ticket: under any expiry, since its owner
    /// renames it to renew it).
    fn woken_by(&self, path: &str) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.woken
            .iter()
            .filter(|(_, p)| same(p, path))
            .map(|(who, _)| who.clone())
            .collect()
    }

    /// Whether `who` sleeps on `path` now (a ticket under any expiry).
    fn asleep_on_same(&self, who: &str, path: &str) -> bool {
        self.asleep_on(who).is_some_and(|p| same(&p, path))
    }

    /// The path `who` sleeps on now, if it sleeps.
    fn asleep_on(&self, who: &str) -> Option<String> {
        self.state.lock().unwrap().asleep.get(who).cloned()
    }
}

/// Whether two paths name the same entry: equal, or the same ticket (`wait.<arrival>.<token>`)
/// under different expiries.
fn same(a: &str, b: &str) -> bool {
    let ticket = |p: &str| {
        p.starts_with("bed.queue/")
            .then(|| p.rsplit_once('.').map(|(t, _)| t.to_owned()))
            .flatten()
    };
    a == b || ticket(a).is_some_and(|t| ticket(b) == Some(t))
}

/// Tells the watches of its renames and removals, and counts its looks (the listings and
/// `stat`s a waiter makes).
struct Watched {
    watches: Arc<Watches>,
    looks: Arc<AtomicU64>,
}

impl Hooks for Watched {
    fn remove_dir(&self, fs: &StdFs, path: &str) -> Result<(), FsError> {
        fs.remove_dir(path)?;
        self.watches.gone(path);
        Ok(())
    }
    fn rename(&self, fs: &StdFs, from: &str, to: &str) -> Result<(), FsError> {
        fs.rename(from, to)?;
        self.watches.gone(from);
        Ok(())
    }
    fn read_dir(&self, fs: &StdFs, path: &str) -> Result<Vec<String>, FsError> {
        self.looks.fetch_add(1, Ordering::Relaxed);
        fs.read_dir(path)
    }
    fn modified_ms(&self, fs: &StdFs, path: &str) -> Result<Option<u64>, FsError> {
        self.looks.fetch_add(1, Ordering::Relaxed);
        fs.modified_ms(path)
    }
    fn exists(&self, fs: &StdFs, path: &str) -> Result<bool, FsError> {
        self.looks.fetch_add(1, Ordering::Relaxed);
        fs.exists(path)
    }
}

/// [`StdEnv`] whose `sleep_until_changed` is woken by [`Watches`] (or, `lost`, never early).
struct WakingEnv {
    inner: StdEnv,
    who: String,
    root: PathBuf,
    watches: Arc<Watches>,
    /// Every wake-up is lost: each sleep lasts its whole time.
    lost: bool,
    /// Whether to offer wake-ups at all (off: the polling fallback).
    wakes: bool,
}

impl Env for WakingEnv {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.inner.monotonic_ms()
    }
    fn sleep_ms(&self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn sleep_us(&self, us: u64) {
        if us < 1000 {
            let mut st = self.watches.state.lock().unwrap();
            *st.polls.entry(self.who.clone()).or_default() += 1;
        }
        self.inner.sleep_us(us)
    }
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
    fn wakes_on_change(&self) -> bool {
        self.wakes
    }
    fn sleep_until_changed(&self, path: &str, us: u64) {
        let end = Instant::now() + Duration::from_micros(us);
        let mut st = self.watches.state.lock().unwrap();
        // The watch first, then the look (as the lockbydir host does): no change slips between.
        let id = st.next;
        st.next += 1;
        *st.watched.entry(self.who.clone()).or_default() += 1;
        st.watches.insert(
            id,
            Watch {
                who: self.who.clone(),
                path: path.to_owned(),
                fired: false,
            },
        );
        if !self.lost && !self.root.join(path).exists() {
            st.watches.remove(&id);
            return;
        }
        st.asleep.insert(self.who.clone(), path.to_owned());
        loop {
            let fired = st.watches[&id].fired && !self.lost;
            let now = Instant::now();
            if fired || now >= end {
                if fired {
                    let woken = (st.watches[&id].who.clone(), path.to_owned());
                    st.woken.push(woken);
                }
                break;
            }
            st = self.watches.changed.wait_timeout(st, end - now).unwrap().0;
        }
        st.watches.remove(&id);
        st.asleep.remove(&self.who);
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "lockbydir-wakeups-{tag}-{}-{:x}",
            std::process::id(),
            StdEnv::new().random_u64()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.0.join(sub)) {
            Ok(dir) => dir
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Block until `ready` holds (the other threads got there).
    fn wait_for(&self, what: &str, ready: impl Fn() -> bool) {
        for _ in 0..30_000 {
            if ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!(
            "gave up waiting for {what}: {:?}",
            self.entries("bed.queue")
        );
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the waiters of one test are woken.
#[derive(Clone, Copy)]
enum Wakeups {
    Real,
    AllLost,
    Off,
}

/// The lock directory of one test with its watches.
struct Setup {
    dir: TempDir,
    watches: Arc<Watches>,
    wakeups: Wakeups,
}

type TestLock = Lock<HookedFs<Watched>, WakingEnv>;

impl Setup {
    fn new(tag: &str, wakeups: Wakeups) -> Self {
        Setup {
            dir: TempDir::new(tag),
            watches: Arc::default(),
            wakeups,
        }
    }

    /// A handle for `who` (and the counter of its looks).
    fn open(&self, who: &str, patience_ms: u64) -> (TestLock, Arc<AtomicU64>) {
        open_at(&self.dir.0, &self.watches, self.wakeups, who, patience_ms)
    }

    /// Start a thread that acquires (blocking), notes `who` in `order`, and releases.
    fn waiter(
        &self,
        who: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
    ) -> std::thread::JoinHandle<u64> {
        let (path, watches, wakeups, order) = (
            self.dir.0.clone(),
            self.watches.clone(),
            self.wakeups,
            order.clone(),
        );
        std::thread::spawn(move || {
            let (mut lock, _) = open_at(&path, &watches, wakeups, who, u64::MAX);
            let fence = acquired(lock.acquire().unwrap());
            order.lock().unwrap().push(who);
            assert_eq!(lock.release(), Ok(Released::InTime));
            fence
        })
    }

    /// The path (relative to the lock directory) of the one ticket in the queue not among
    /// `known`.
    fn new_ticket(&self, known: &[String]) -> String {
        let fresh: Vec<String> = self
            .dir
            .entries("bed.queue")
            .into_iter()
            .map(|t| format!("bed.queue/{t}"))
            .filter(|t| !known.contains(t))
            .collect();
        assert_eq!(fresh.len(), 1, "{fresh:?}");
        fresh[0].clone()
    }

    /// The path of the lock's state entry.
    fn state(&self) -> String {
        let inside = self.dir.entries("bed.lockdir");
        assert_eq!(inside.len(), 1, "{inside:?}");
        format!("bed.lockdir/{}", inside[0])
    }
}

fn open_at(
    dir: &Path,
    watches: &Arc<Watches>,
    wakeups: Wakeups,
    who: &str,
    patience_ms: u64,
) -> (TestLock, Arc<AtomicU64>) {
    let looks = Arc::new(AtomicU64::new(0));
    let fs = HookedFs::new(
        dir,
        Watched {
            watches: watches.clone(),
            looks: looks.clone(),
        },
    );
    let env = WakingEnv {
        inner: StdEnv::new(),
        who: who.into(),
        root: dir.to_owned(),
        watches: watches.clone(),
        lost: matches!(wakeups, Wakeups::AllLost),
        wakes: !matches!(wakeups, Wakeups::Off),
    };
    let options = Options {
        timeout_ms: 60_000,
        patience_ms,
        holder: who.into(),
        ..Options::default()
    };
    (Lock::new(fs, env, "bed", options).unwrap(), looks)
}

fn acquired(outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Acquired(grant) => grant.fence,
        Outcome::Busy(h) => panic!("expected to acquire, but busy (holder {h:?})"),
    }
}

/// A holder, and waiters queued behind it one after the other (each sees the one before it
/// queued): their threads and ticket paths.
fn line_up(
    setup: &Setup,
    labels: &[&'static str],
    order: &Arc<Mutex<Vec<&'static str>>>,
) -> (Vec<std::thread::JoinHandle<u64>>, Vec<String>) {
    let mut threads = Vec::new();
    let mut tickets: Vec<String> = Vec::new();
    for label in labels {
        threads.push(setup.waiter(label, order));
        setup.dir.wait_for("the next ticket", || {
            setup.dir.entries("bed.queue").len() == tickets.len() + 1
        });
        tickets.push(setup.new_ticket(&tickets));
        // Arrival times have millisecond resolution: make each one later than the last.
        std::thread::sleep(Duration::from_millis(3));
    }
    (threads, tickets)
}

#[test]
fn waiters_woken_by_changes_are_served_in_the_order_they_came() {
    let setup = Setup::new("fifo", Wakeups::Real);
    let (mut holder, _) = setup.open("holder", u64::MAX);
    acquired(holder.acquire().unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let labels = ["w1", "w2", "w3", "w4"];
    let (threads, _) = line_up(&setup, &labels, &order);
    assert_eq!(holder.release(), Ok(Released::InTime));
    let fences: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(*order.lock().unwrap(), labels);
    assert_eq!(fences, [2, 3, 4, 5]);
    assert!(setup.dir.entries("bed.queue").is_empty());
    // Nobody polled: every sleep was on a name.
    let st = setup.watches.state.lock().unwrap();
    assert!(st.polls.is_empty(), "{:?}", st.polls);
    assert!(!st.woken.is_empty());
}

#[test]
fn a_release_wakes_the_first_waiter_and_nobody_else() {
    let setup = Setup::new("one-woken", Wakeups::Real);
    let (mut holder, _) = setup.open("holder", u64::MAX);
    acquired(holder.acquire().unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let (threads, tickets) = line_up(&setup, &["w1", "w2", "w3"], &order);
    // Everyone asleep on what it waits for: the first on the (marked) state entry, each of
    // the others on the ticket of the one before it.
    let watches = &setup.watches;
    setup.dir.wait_for("the line asleep", || {
        watches.asleep_on("w1") == Some(setup.state())
            && watches.asleep_on_same("w2", &tickets[0])
            && watches.asleep_on_same("w3", &tickets[1])
    });
    let released = setup.state();
    assert_eq!(holder.release(), Ok(Released::InTime));
    let fences: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(fences, [2, 3, 4]);
    assert_eq!(watches.woken_by(&released), ["w1"], "woken by the release");
    // And the line moved on by withdrawals: each woken by the one before it taking its turn.
    // (also each time it renewed its ticket, a rename).
    for (ticket, successor) in tickets.iter().zip(["w2", "w3"]) {
        let woken = watches.woken_by(ticket);
        assert!(
            !woken.is_empty() && woken.iter().all(|w| w == successor),
            "{woken:?}"
        );
    }
}

#[test]
fn a_waiter_that_gives_up_hands_its_place_on_at_once() {
    let setup = Setup::new("give-up", Wakeups::Real);
    let (mut holder, _) = setup.open("holder", u64::MAX);
    acquired(holder.acquire().unwrap());
    // The quitter queues first (its patience runs out at once, it keeps its ticket), then
    // a waiter queues behind it and watches its ticket.
    let (mut quitter, _) = setup.open("quitter", 1);
    assert!(matches!(quitter.acquire().unwrap(), Outcome::Busy(_)));
    let quitters = setup.new_ticket(&[]);
    std::thread::sleep(Duration::from_millis(3));
    let order = Arc::new(Mutex::new(Vec::new()));
    let waiter = setup.waiter("w", &order);
    let watches = &setup.watches;
    setup
        .dir
        .wait_for("the waiter asleep on the quitter's ticket", || {
            watches.asleep_on_same("w", &quitters)
        });
    // It gives up: its ticket goes at once, which wakes the one behind it, now first in line.
    drop(quitter);
    assert!(!setup.dir.0.join(&quitters).exists(), "ticket withdrawn");
    setup
        .dir
        .wait_for("the waiter asleep on the state entry", || {
            watches.asleep_on("w") == Some(setup.state())
        });
    assert_eq!(watches.woken_by(&quitters), ["w"]);
    assert_eq!(holder.release(), Ok(Released::InTime));
    assert_eq!(waiter.join().unwrap(), 2);
}

#[test]
fn with_every_wake_up_lost_everyone_still_gets_in() {
    let setup = Setup::new("all-lost", Wakeups::AllLost);
    let (mut holder, _) = setup.open("holder", u64::MAX);
    acquired(holder.acquire().unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let labels = ["w1", "w2", "w3"];
    let (threads, _) = line_up(&setup, &labels, &order);
    assert_eq!(holder.release(), Ok(Released::InTime));
    let fences: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(*order.lock().unwrap(), labels);
    assert_eq!(fences, [2, 3, 4]);
    assert!(setup.watches.state.lock().unwrap().woken.is_empty());
}

/// The same Env with wake-ups off: the first two in line poll (the fallback is still there).
#[test]
fn without_wake_ups_the_first_in_line_polls() {
    let setup = Setup::new("off", Wakeups::Off);
    let (mut holder, _) = setup.open("holder", u64::MAX);
    acquired(holder.acquire().unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let (threads, _) = line_up(&setup, &["w1", "w2"], &order);
    let watches = &setup.watches;
    setup.dir.wait_for("w1 polling", || {
        watches
            .state
            .lock()
            .unwrap()
            .polls
            .get("w1")
            .is_some_and(|&n| n > 1)
    });
    assert_eq!(holder.release(), Ok(Released::InTime));
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["w1", "w2"]);
    let st = watches.state.lock().unwrap();
    assert!(st.woken.is_empty() && st.asleep.is_empty());
}

/// A measurement, not a check: how many looks (listings and `stat`s) three waiters make while
/// a holder keeps the lock for 500 ms, then while the line drains, with and without
/// wake-ups. `cargo test --release -p lockbydir-protocol --test wakeups -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn looks_while_waiting() {
    for (name, wakeups) in [("polling", Wakeups::Off), ("wake-ups", Wakeups::Real)] {
        let setup = Setup::new("looks", wakeups);
        let (mut holder, _) = setup.open("holder", u64::MAX);
        acquired(holder.acquire().unwrap());
        let mut counters = Vec::new();
        let mut threads = Vec::new();
        for who in ["w1", "w2", "w3"] {
            let (mut lock, looks) = setup.open(who, u64::MAX);
            counters.push(looks);
            threads.push(std::thread::spawn(move || {
                acquired(lock.acquire().unwrap());
                lock.release().unwrap();
            }));
            let n = counters.len();
            setup.dir.wait_for("the next ticket", || {
                setup.dir.entries("bed.queue").len() == n
            });
            std::thread::sleep(Duration::from_millis(3));
        }
        let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        std::thread::sleep(Duration::from_millis(500));
        let during: Vec<u64> = counters
            .iter()
            .zip(&before)
            .map(|(c, b)| c.load(Ordering::Relaxed) - b)
            .collect();
        holder.release().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let total: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let st = setup.watches.state.lock().unwrap();
        let watched: Vec<u64> = ["w1", "w2", "w3"]
            .iter()
            .map(|w| st.watched.get(*w).copied().unwrap_or(0))
            .collect();
        eprintln!(
            "{name}: looks by w1, w2, w3 during 500 ms of hold: {during:?}; in all: {total:?}, \
             plus {watched:?} sleeps on a name"
        );
    }
}
