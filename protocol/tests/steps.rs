//! The resumable wait: [`Lock::acquire_step`] driven by a caller that does the sleeping itself,
//! as an async host does, on a real directory.
//!
//! Checked: a step never sleeps (the environment here panics if asked to); one thread drives
//! many waiting handles and serves them in the order they came; a sleep names the entry
//! whose change is worth waking for (the holder's state entry first in line, the ticket of
//! the one before further back); a cancelled or dropped wait leaves no ticket and never takes
//! the lock; a step after patience ran out says busy and keeps the place, as `acquire` does;
//! a waiter far back in line, woken by its own timer or by the renewal of the ticket before
//! it, does not read the queue (a thousand waits of one host would otherwise list a thousand
//! tickets a thousand times a second).
//!
//! No assertion is about time.

mod hooked_fs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hooked_fs::{HookedFs, Hooks};
use lockbydir_protocol::{
    Env, Fairness, Fs, FsError, Lock, Options, Outcome, Released, StdEnv, StdFs, Step,
};

/// [`StdEnv`] that refuses to sleep: the caller of the steps sleeps, never the lock.
struct NoSleepEnv {
    inner: StdEnv,
    wakes: bool,
}

impl Env for NoSleepEnv {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.inner.monotonic_ms()
    }
    fn sleep_ms(&self, ms: u64) {
        panic!("a step slept {ms} ms itself");
    }
    fn sleep_us(&self, us: u64) {
        panic!("a step slept {us} µs itself");
    }
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
    fn wakes_on_change(&self) -> bool {
        self.wakes
    }
    fn sleep_until_changed(&self, path: &str, us: u64) {
        panic!("a step slept on {path} for {us} µs itself");
    }
}

type StepLock = Lock<StdFs, NoSleepEnv>;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "lockbydir-steps-{name}-{}-{:x}",
            std::process::id(),
            StdEnv::new().random_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.join(sub))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The one state entry, as a path relative to the lock directory.
    fn state(&self) -> String {
        let inside = self.entries("bed.lockdir");
        assert_eq!(inside.len(), 1, "{inside:?}");
        format!("bed.lockdir/{}", inside[0])
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(dir: &Path, who: &str, patience_ms: u64, wakes: bool) -> StepLock {
    open_with(dir, who, patience_ms, wakes, Fairness::Fifo)
}

fn open_with(dir: &Path, who: &str, patience_ms: u64, wakes: bool, fairness: Fairness) -> StepLock {
    let options = Options {
        timeout_ms: 60_000,
        patience_ms,
        holder: who.into(),
        fairness,
        ..Options::default()
    };
    let env = NoSleepEnv {
        inner: StdEnv::new(),
        wakes,
    };
    Lock::new(StdFs::new(dir), env, "bed", options).unwrap()
}

/// A holder, by the ordinary blocking API.
fn holder(dir: &Path) -> Lock<StdFs, StdEnv> {
    let options = Options {
        timeout_ms: 60_000,
        holder: "holder".into(),
        ..Options::default()
    };
    let mut lock = Lock::new(StdFs::new(dir), StdEnv::new(), "bed", options).unwrap();
    assert!(matches!(lock.acquire().unwrap(), Outcome::Acquired(_)));
    lock
}

/// One step that must ask for a sleep; what it asked.
fn sleeps(lock: &mut StepLock) -> (Option<String>, u64) {
    match lock.acquire_step().unwrap() {
        Step::Sleep { until_changed, us } => (until_changed, us),
        Step::Done(outcome) => panic!("expected to sleep, got {outcome:?}"),
    }
}

/// A wait driven by [`event_loop`]: who, the handle, when its sleep ends, and the entry
/// whose change ends it sooner.
struct Waiter {
    who: usize,
    lock: StepLock,
    until: Instant,
    watched: Option<PathBuf>,
}

impl Waiter {
    fn sleep(&mut self, dir: &Path, until_changed: Option<String>, us: u64) {
        self.until = Instant::now() + Duration::from_micros(us);
        self.watched = until_changed.map(|p| dir.join(p));
    }

    /// Whether its sleep is over: its time is up, or the entry it watches is gone (what an
    /// async host learns from inotify; looked at here every 100 µs).
    fn due(&self) -> bool {
        Instant::now() >= self.until || self.watched.as_ref().is_some_and(|p| !p.exists())
    }
}

/// One thread steps every waiter whose sleep is over, and sleeps 100 µs when none is;
/// each waiter that gets the lock releases it at once. Who got it, in order, with fences.
fn event_loop(dir: &Path, mut waiters: Vec<Waiter>) -> Vec<(usize, u64)> {
    let mut served = Vec::new();
    while !waiters.is_empty() {
        let Some(next) = waiters.iter().position(Waiter::due) else {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        };
        match waiters[next].lock.acquire_step().unwrap() {
            Step::Sleep { until_changed, us } => waiters[next].sleep(dir, until_changed, us),
            Step::Done(Outcome::Acquired(grant)) => {
                let mut waiter = waiters.remove(next);
                served.push((waiter.who, grant.fence));
                assert_eq!(waiter.lock.release(), Ok(Released::InTime));
            }
            Step::Done(Outcome::Busy(h)) => panic!("no patience was set, yet busy ({h:?})"),
        }
    }
    served
}

#[test]
fn one_thread_drives_many_waits_and_serves_them_in_the_order_they_came() {
    let ways = [true, false].map(|wakes| [Fairness::Fifo, Fairness::Bounded].map(|f| (wakes, f)));
    for (wakes, fairness) in ways.into_iter().flatten() {
        let dir = Dir::new(&format!("many-{wakes}-{fairness:?}"));
        let mut held = holder(&dir.0);
        let n = 12;
        let mut waiters = Vec::new();
        for who in 0..n {
            let mut waiter = Waiter {
                who,
                lock: open_with(&dir.0, &format!("w{who}"), u64::MAX, wakes, fairness),
                until: Instant::now(),
                watched: None,
            };
            let (watched, us) = sleeps(&mut waiter.lock);
            waiter.sleep(&dir.0, watched, us);
            waiters.push(waiter);
            assert_eq!(dir.entries("bed.queue").len(), who + 1, "one ticket each");
            // Arrival times have millisecond resolution: make each one later than the last.
            std::thread::sleep(Duration::from_millis(3));
        }
        assert_eq!(held.release(), Ok(Released::InTime));
        let served = event_loop(&dir.0, waiters);
        let expected: Vec<(usize, u64)> = (0..n).map(|i| (i, 2 + i as u64)).collect();
        assert_eq!(served, expected, "wake-ups: {wakes}, {fairness:?}");
        assert!(dir.entries("bed.queue").is_empty());
    }
}

#[test]
fn a_sleep_names_what_is_worth_waking_for() {
    let dir = Dir::new("names");
    let mut held = holder(&dir.0);
    let mut first = open(&dir.0, "first", u64::MAX, true);
    let (watched, us) = sleeps(&mut first);
    // First in line: the holder's entry, which the waiter has marked meanwhile.
    assert_eq!(watched.as_deref(), Some(dir.state().as_str()));
    assert!(
        dir.state().starts_with("bed.lockdir/held+"),
        "{}",
        dir.state()
    );
    assert!(us > 0);
    let firsts_ticket = format!("bed.queue/{}", dir.entries("bed.queue")[0]);
    std::thread::sleep(Duration::from_millis(3));
    let mut second = open(&dir.0, "second", u64::MAX, true);
    let (watched, _) = sleeps(&mut second);
    // Second: the ticket of the one before it.
    assert_eq!(watched.as_deref(), Some(firsts_ticket.as_str()));
    // Without change notification, nothing is named: the caller just sleeps.
    let mut third = open(&dir.0, "third", u64::MAX, false);
    assert_eq!(sleeps(&mut third).0, None);
    drop((first, second, third));
    assert_eq!(held.release(), Ok(Released::InTime));
}

#[test]
fn a_cancelled_or_dropped_wait_leaves_no_ticket_and_never_takes_the_lock() {
    let dir = Dir::new("cancel");
    let mut held = holder(&dir.0);
    let mut cancelled = open(&dir.0, "cancelled", u64::MAX, true);
    sleeps(&mut cancelled);
    std::thread::sleep(Duration::from_millis(3));
    let mut dropped = open(&dir.0, "dropped", u64::MAX, true);
    sleeps(&mut dropped);
    assert_eq!(dir.entries("bed.queue").len(), 2);
    cancelled.cancel_wait();
    assert_eq!(
        dir.entries("bed.queue").len(),
        1,
        "the cancelled ticket went"
    );
    drop(dropped);
    assert!(
        dir.entries("bed.queue").is_empty(),
        "the dropped ticket went"
    );
    let fence = held.fence().unwrap();
    assert_eq!(held.release(), Ok(Released::InTime));
    // Nobody took it: it is free with the same fence, and a newcomer gets it at once.
    assert!(
        dir.state().starts_with("bed.lockdir/free"),
        "{}",
        dir.state()
    );
    let mut newcomer = open(&dir.0, "newcomer", 0, true);
    match newcomer.try_acquire().unwrap() {
        Outcome::Acquired(grant) => assert_eq!(grant.fence, fence + 1),
        busy => panic!("{busy:?}"),
    }
    // A cancelled handle can wait again, and a step of a handle that holds is refused.
    assert!(cancelled.acquire_step().is_ok());
    assert!(newcomer.acquire_step().is_err());
}

#[test]
fn a_step_after_patience_says_busy_and_keeps_the_place() {
    let dir = Dir::new("patience");
    let mut held = holder(&dir.0);
    let mut first = open(&dir.0, "first", 1, true);
    let outcome = loop {
        match first.acquire_step().unwrap() {
            // Late on purpose: the wait's patience (1 ms) is over at the next step.
            Step::Sleep { .. } => std::thread::sleep(Duration::from_millis(5)),
            Step::Done(outcome) => break outcome,
        }
    };
    assert!(matches!(outcome, Outcome::Busy(Some(_))), "{outcome:?}");
    let tickets = dir.entries("bed.queue");
    assert_eq!(tickets.len(), 1, "the ticket is kept");
    std::thread::sleep(Duration::from_millis(3));
    let mut second = open(&dir.0, "second", u64::MAX, true);
    sleeps(&mut second);
    assert_eq!(held.release(), Ok(Released::InTime));
    // The next step begins a new wait in the same place: first, ahead of `second`.
    let outcome = loop {
        match first.acquire_step().unwrap() {
            Step::Sleep { .. } => std::thread::sleep(Duration::from_micros(200)),
            Step::Done(outcome) => break outcome,
        }
    };
    assert!(matches!(outcome, Outcome::Acquired(_)), "{outcome:?}");
    assert_eq!(first.release(), Ok(Released::InTime));
}

/// Counts listings of the queue directory.
struct QueueListings(Arc<AtomicU32>);

impl Hooks for QueueListings {
    fn read_dir(&self, fs: &StdFs, path: &str) -> Result<Vec<String>, FsError> {
        if path.ends_with(".queue") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fs.read_dir(path)
    }
}

#[test]
fn a_waiter_far_back_reads_the_queue_neither_on_its_timer_nor_on_a_renewal_ahead() {
    let dir = Dir::new("renewals");
    let mut held = holder(&dir.0);
    // Four waiters ahead of the last one: far enough back that the lock's state alone tells
    // it that its turn is not near.
    let mut ahead: Vec<StepLock> = (0..4)
        .map(|i| {
            let mut lock = open(&dir.0, &format!("w{i}"), u64::MAX, true);
            sleeps(&mut lock);
            std::thread::sleep(Duration::from_millis(2));
            lock
        })
        .collect();
    let listings = Arc::new(AtomicU32::new(0));
    let fs = HookedFs::new(&dir.0, QueueListings(Arc::clone(&listings)));
    let options = Options {
        timeout_ms: 60_000,
        patience_ms: u64::MAX,
        holder: "last".into(),
        ..Options::default()
    };
    let env = NoSleepEnv {
        inner: StdEnv::new(),
        wakes: true,
    };
    let mut last = Lock::new(fs, env, "bed", options).unwrap();
    let step =
        |lock: &mut Lock<HookedFs<QueueListings>, NoSleepEnv>| match lock.acquire_step().unwrap() {
            Step::Sleep { until_changed, .. } => until_changed.expect("a name to watch"),
            Step::Done(outcome) => panic!("expected to sleep, got {outcome:?}"),
        };
    // Its first look reads the queue, and so does the next (which finds its place among the
    // tickets, its own now included).
    step(&mut last);
    let watched = step(&mut last);
    let predecessor = format!("bed.queue/{}", dir.entries("bed.queue")[3]);
    assert_eq!(watched, predecessor, "{:?}", dir.entries("bed.queue"));
    let before = listings.load(Ordering::Relaxed);
    // Its sleep ends by its timer, nothing changed: the state and the ticket it watched tell.
    assert_eq!(step(&mut last), predecessor);
    assert_eq!(
        listings.load(Ordering::Relaxed),
        before,
        "a step on its timer read the queue"
    );
    // The one before renews its ticket (after half its lifetime) under a new name.
    std::thread::sleep(Duration::from_millis(1_050));
    sleeps(&mut ahead[3]);
    assert!(
        !dir.0.join(&predecessor).exists(),
        "the ticket before was not renewed: {:?}",
        dir.entries("bed.queue")
    );
    let renewed = step(&mut last);
    assert_ne!(renewed, predecessor);
    assert!(dir.0.join(&renewed).exists(), "{renewed} is not a ticket");
    assert_eq!(
        renewed.rsplit_once('.').unwrap().0,
        predecessor.rsplit_once('.').unwrap().0,
        "not the same waiter's ticket"
    );
    assert_eq!(
        listings.load(Ordering::Relaxed),
        before,
        "a renewal ahead made it read the queue"
    );
    // The one before goes (it gives up): now the queue is read, and the one before that is
    // watched.
    drop(ahead.pop());
    let next = step(&mut last);
    assert_eq!(listings.load(Ordering::Relaxed), before + 1);
    assert_eq!(next.rsplit_once('.').unwrap().0, {
        let third = format!("bed.queue/{}", dir.entries("bed.queue")[2]);
        third.rsplit_once('.').unwrap().0.to_string()
    });
    drop((ahead, last));
    assert_eq!(held.release(), Ok(Released::InTime));
}
