//! The queue on a real directory, with real threads and the real clock: a holder that lets go
//! while someone waits does not take the lock straight back, waiters are served in the order
//! they came, a dead waiter's ticket stops counting, a marked holder can still refresh and
//! release, and an uncontended acquire after one's own release is a single rename.
//!
//! No assertion here is about time: threads wait for each other through what they can see in
//! the lock directory (a ticket appearing, an entry being marked).

mod hooked_fs;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hooked_fs::{HookedFs, Hooks};
use lockbydir_protocol::entry::Ticket;
use lockbydir_protocol::{
    Env, Fairness, Fs, FsError, Lock, LockState, Options, Outcome, Released, StdEnv, StdFs, Step,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "lockbydir-fairness-{tag}-{}-{:x}",
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

    /// Whether the lock's state is fence `fence` held, marked (`held+<written>.<fence>.…`).
    fn marked_at_fence(&self, fence: u64) -> bool {
        let state = self.state();
        state.starts_with("held+") && state.split('.').nth(1) == Some(&fence.to_string())
    }

    /// The lock's one state entry.
    fn state(&self) -> String {
        let inside = self.entries("bed.lockdir");
        assert_eq!(inside.len(), 1, "{inside:?}");
        inside[0].clone()
    }

    /// Block until `ready` holds for what the directory shows (the other thread got there).
    fn wait_for(&self, what: &str, ready: impl Fn(&TempDir) -> bool) {
        for _ in 0..20_000 {
            if ready(self) {
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

/// A handle with first-come-first-served fairness, which most of these tests are about.
fn open(dir: &Path, holder: &str) -> Lock<StdFs, StdEnv> {
    open_with(dir, holder, Fairness::Fifo)
}

/// A handle with `fairness` on lock `bed` in `dir`.
fn open_with(dir: &Path, holder: &str, fairness: Fairness) -> Lock<StdFs, StdEnv> {
    let options = Options {
        timeout_ms: 60_000,
        holder: holder.into(),
        fairness,
        ..Options::default()
    };
    Lock::new(StdFs::new(dir), StdEnv::new(), "bed", options).unwrap()
}

fn acquired(outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Acquired(grant) => grant.fence,
        Outcome::Busy(h) => panic!("expected to acquire, but busy (holder {h:?})"),
    }
}

/// Start a thread that acquires (blocking), notes `label` in `order`, and releases.
fn waiter(
    dir: &TempDir,
    label: &'static str,
    order: &Arc<Mutex<Vec<&'static str>>>,
) -> std::thread::JoinHandle<u64> {
    let (path, order) = (dir.0.clone(), order.clone());
    std::thread::spawn(move || {
        let mut lock = open(&path, label);
        let fence = acquired(lock.acquire().unwrap());
        order.lock().unwrap().push(label);
        assert_eq!(lock.release(), Ok(Released::InTime));
        fence
    })
}

#[test]
fn a_holder_that_lets_go_while_someone_waits_queues_behind_them() {
    let dir = TempDir::new("barge");
    let mut alice = open(&dir.0, "alice");
    assert_eq!(acquired(alice.acquire().unwrap()), 1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let bob = waiter(&dir, "bob", &order);
    dir.wait_for("bob's ticket and mark", |d| {
        d.entries("bed.queue").len() == 1 && d.marked_at_fence(1)
    });
    assert_eq!(alice.release(), Ok(Released::InTime));
    // Without the queue this would take the lock straight back (the releaser is fastest).
    assert_eq!(alice.try_acquire().unwrap(), Outcome::Busy(None));
    assert_eq!(bob.join().unwrap(), 2, "bob got the lock next");
    assert_eq!(acquired(alice.try_acquire().unwrap()), 3);
    assert_eq!(alice.release(), Ok(Released::InTime));
    assert_eq!(*order.lock().unwrap(), ["bob"]);
    assert!(
        dir.entries("bed.queue").is_empty(),
        "bob took his ticket back"
    );
}

#[test]
fn waiters_are_served_in_the_order_they_came() {
    let dir = TempDir::new("fifo");
    let mut holder = open(&dir.0, "holder");
    acquired(holder.acquire().unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let labels = ["w1", "w2", "w3", "w4"];
    let mut threads = Vec::new();
    for (i, label) in labels.into_iter().enumerate() {
        threads.push(waiter(&dir, label, &order));
        dir.wait_for("the next ticket", |d| d.entries("bed.queue").len() == i + 1);
        // Arrival times have millisecond resolution: make each one later than the last.
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(holder.release(), Ok(Released::InTime));
    let fences: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(*order.lock().unwrap(), labels);
    assert_eq!(fences, [2, 3, 4, 5]);
    assert!(dir.entries("bed.queue").is_empty());
    // The last one served may leave the state marked (it took the lock as first in line
    // without reading the queue again); a mark with nobody queued holds nobody up.
    assert!(["free.5", "free+.5"].contains(&dir.state().as_str()));
    assert_eq!(acquired(holder.try_acquire().unwrap()), 6);
}

#[test]
fn a_dead_waiters_ticket_stops_counting_when_it_expires() {
    let dir = TempDir::new("dead-ticket");
    let mut alice = open(&dir.0, "alice");
    acquired(alice.acquire().unwrap());
    assert_eq!(alice.release(), Ok(Released::InTime));
    // A waiter that queued, marked the state, and died: its ticket expires in 300 ms.
    let now = StdEnv::new().now_ms();
    let ticket = Ticket {
        arrival_ms: now - 10,
        token: 0xdead,
        expires_ms: now + 300,
    };
    std::fs::create_dir_all(dir.0.join("bed.queue").join(ticket.encode())).unwrap();
    std::fs::rename(
        dir.0.join("bed.lockdir/free.1"),
        dir.0.join("bed.lockdir/free+.1"),
    )
    .unwrap();
    let mut bob = open(&dir.0, "bob");
    assert_eq!(bob.try_acquire().unwrap(), Outcome::Busy(None));
    assert_eq!(bob.inspect().unwrap(), LockState::Free(1));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(acquired(bob.try_acquire().unwrap()), 2);
    assert!(
        dir.entries("bed.queue").is_empty(),
        "the expired ticket was removed"
    );
}

#[test]
fn a_marked_holder_still_refreshes_and_releases() {
    let dir = TempDir::new("marked");
    // A label too long for an entry name is cut short in the name: the holder must still
    // recognise its own marked entry.
    let mut alice = open(&dir.0, &"alice ".repeat(40));
    acquired(alice.acquire().unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let bob = waiter(&dir, "bob", &order);
    dir.wait_for("bob's mark", |d| d.marked_at_fence(1));
    let deadline = alice.refresh().expect("a mark is not a loss");
    assert!(dir.marked_at_fence(1), "the mark survives a refresh");
    assert!(dir.state().contains(&format!(".{deadline}.")));
    assert_eq!(alice.release(), Ok(Released::InTime));
    assert_eq!(bob.join().unwrap(), 2);
    // Bob may have taken it as first in line, marked (see the FIFO test).
    assert!(["free.2", "free+.2"].contains(&dir.state().as_str()));
}

/// Counts listings, `stat`s and renames.
#[derive(Clone, Default)]
struct Counting {
    listings: Rc<Cell<u32>>,
    stats: Rc<Cell<u32>>,
    renames: Rc<Cell<u32>>,
}

impl Counting {
    /// Listings and `stat`s: the looks a waiter makes.
    fn looks(&self) -> u32 {
        self.listings.get() + self.stats.get()
    }
}

impl Hooks for Counting {
    fn rename(&self, fs: &StdFs, from: &str, to: &str) -> Result<(), FsError> {
        self.renames.set(self.renames.get() + 1);
        fs.rename(from, to)
    }
    fn read_dir(&self, fs: &StdFs, path: &str) -> Result<Vec<String>, FsError> {
        self.listings.set(self.listings.get() + 1);
        fs.read_dir(path)
    }
    fn exists(&self, fs: &StdFs, path: &str) -> Result<bool, FsError> {
        self.stats.set(self.stats.get() + 1);
        fs.exists(path)
    }
}

#[test]
fn an_uncontended_acquire_after_ones_own_release_is_one_rename() {
    let dir = TempDir::new("fast");
    let fs = HookedFs::new(&dir.0, Counting::default());
    let mut lock = Lock::new(fs.clone(), StdEnv::new(), "bed", Options::default()).unwrap();
    acquired(lock.try_acquire().unwrap());
    lock.release().unwrap();
    let (listings, renames) = (fs.hooks.listings.get(), fs.hooks.renames.get());
    assert_eq!(acquired(lock.acquire().unwrap()), 2);
    assert_eq!(fs.hooks.listings.get() - listings, 0, "no listing");
    assert_eq!(fs.hooks.renames.get() - renames, 1, "one rename");
    lock.release().unwrap();
    // Someone else took it meanwhile: the remembered `free.2` is gone, the acquire looks.
    let mut other = open(&dir.0, "other");
    acquired(other.try_acquire().unwrap());
    other.release().unwrap();
    assert_eq!(acquired(lock.try_acquire().unwrap()), 4);
    assert!(
        fs.hooks.listings.get() > listings,
        "it listed after the fast path failed"
    );
}

#[test]
fn a_newcomer_queues_behind_every_ticket_it_saw_even_one_stamped_later() {
    let dir = TempDir::new("behind");
    let mut alice = open(&dir.0, "alice");
    acquired(alice.acquire().unwrap());
    assert_eq!(alice.release(), Ok(Released::InTime));
    // A waiter whose clock runs 5 s ahead queued (and marked the state); it expires in 300 ms
    // without ever taking the lock. Alice must queue behind it, not in front by her clock.
    let now = StdEnv::new().now_ms();
    let ticket = Ticket {
        arrival_ms: now + 5_000,
        token: 0xbeef,
        expires_ms: now + 300,
    };
    let path = dir.0.join("bed.queue").join(ticket.encode());
    std::fs::create_dir_all(&path).unwrap();
    std::fs::rename(
        dir.0.join("bed.lockdir/free.1"),
        dir.0.join("bed.lockdir/free+.1"),
    )
    .unwrap();
    assert_eq!(acquired(alice.acquire().unwrap()), 2);
    assert!(
        !path.exists(),
        "alice got in only after the ticket ahead expired"
    );
}

/// A filesystem whose renames of a *free* state entry (a waiter taking a freed lock) pause
/// first: the waiter is descheduled between deciding to take the lock and taking it, as on a
/// loaded machine.
struct SlowTake {
    pause: Duration,
}

impl Hooks for SlowTake {
    fn rename(&self, fs: &StdFs, from: &str, to: &str) -> Result<(), FsError> {
        if from.starts_with("bed.lockdir/free") {
            std::thread::sleep(self.pause);
        }
        fs.rename(from, to)
    }
}

#[test]
fn a_waiter_paused_while_it_takes_its_turn_is_not_overtaken_by_the_next() {
    let dir = TempDir::new("paused-head");
    let mut holder = open(&dir.0, "holder");
    acquired(holder.acquire().unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    // w1 is first in line but slow to take its turn; w2 is right behind it.
    let (path, log) = (dir.0.clone(), order.clone());
    let w1 = std::thread::spawn(move || {
        let options = Options {
            timeout_ms: 60_000,
            holder: "w1".into(),
            ..Options::default()
        };
        let fs = HookedFs::new(
            &path,
            SlowTake {
                pause: Duration::from_millis(300),
            },
        );
        let mut lock = Lock::new(fs, StdEnv::new(), "bed", options).unwrap();
        let fence = acquired(lock.acquire().unwrap());
        log.lock().unwrap().push("w1");
        assert_eq!(lock.release(), Ok(Released::InTime));
        fence
    });
    dir.wait_for("w1's ticket", |d| d.entries("bed.queue").len() == 1);
    std::thread::sleep(Duration::from_millis(3));
    let w2 = waiter(&dir, "w2", &order);
    dir.wait_for("w2's ticket", |d| d.entries("bed.queue").len() == 2);
    assert_eq!(holder.release(), Ok(Released::InTime));
    let fences = [w1.join().unwrap(), w2.join().unwrap()];
    assert_eq!(*order.lock().unwrap(), ["w1", "w2"]);
    assert_eq!(fences, [2, 3]);
    assert!(dir.entries("bed.queue").is_empty());
}

#[test]
fn a_waiter_that_waits_in_slices_keeps_its_place_in_line() {
    let dir = TempDir::new("slices");
    let mut holder = open(&dir.0, "holder");
    acquired(holder.acquire().unwrap());
    let options = Options {
        timeout_ms: 60_000,
        patience_ms: 30,
        holder: "slicer".into(),
        ..Options::default()
    };
    let mut slicer = Lock::new(StdFs::new(&dir.0), StdEnv::new(), "bed", options).unwrap();
    // Its first slice runs out: it keeps its ticket.
    assert!(matches!(slicer.acquire().unwrap(), Outcome::Busy(_)));
    assert_eq!(
        dir.entries("bed.queue").len(),
        1,
        "the slicer kept its place"
    );
    // Someone comes after it and waits without slices.
    std::thread::sleep(Duration::from_millis(3));
    let order = Arc::new(Mutex::new(Vec::new()));
    let later = waiter(&dir, "later", &order);
    dir.wait_for("the later waiter's ticket", |d| {
        d.entries("bed.queue").len() == 2
    });
    assert_eq!(holder.release(), Ok(Released::InTime));
    // The slicer's next slices find its turn: the later waiter must not get in first.
    let fence = loop {
        match slicer.acquire().unwrap() {
            Outcome::Acquired(grant) => break grant.fence,
            Outcome::Busy(_) => assert!(
                order.lock().unwrap().is_empty(),
                "the later waiter was served first"
            ),
        }
    };
    assert_eq!(fence, 2);
    order.lock().unwrap().push("slicer");
    assert_eq!(slicer.release(), Ok(Released::InTime));
    assert_eq!(later.join().unwrap(), 3);
    assert_eq!(*order.lock().unwrap(), ["slicer", "later"]);
    // Done waiting, neither left a ticket; dropping a handle that gave up gives its ticket back.
    assert!(dir.entries("bed.queue").is_empty());
    let mut holder = open(&dir.0, "holder");
    acquired(holder.acquire().unwrap());
    let options = Options {
        patience_ms: 10,
        ..slicer.options().clone()
    };
    let mut quitter = Lock::new(StdFs::new(&dir.0), StdEnv::new(), "bed", options).unwrap();
    assert!(matches!(quitter.acquire().unwrap(), Outcome::Busy(_)));
    assert_eq!(dir.entries("bed.queue").len(), 1);
    drop(quitter);
    assert!(
        dir.entries("bed.queue").is_empty(),
        "dropped: ticket given back"
    );
}

/// A handle with bounded fairness.
fn open_bounded(dir: &Path, holder: &str) -> Lock<StdFs, StdEnv> {
    open_with(dir, holder, Fairness::Bounded)
}

#[test]
fn under_bounded_fairness_a_holder_takes_the_lock_back_until_the_bound_then_hands_it_on() {
    let dir = TempDir::new("bounded");
    let bounded = |holder: &str| open_bounded(&dir.0, holder);
    let mut alice = bounded("alice");
    assert_eq!(acquired(alice.acquire().unwrap()), 1);
    // Bob queues, first in line, and marks alice's entry; he only acts when stepped here.
    let mut bob = bounded("bob");
    assert!(matches!(bob.acquire_step().unwrap(), Step::Sleep { .. }));
    assert!(dir.marked_at_fence(1), "bob marked the holder's entry");
    // Alice lets go and takes it straight back, ahead of bob, again and again...
    let mut fence = 1;
    let handed_on = loop {
        assert_eq!(alice.release(), Ok(Released::InTime));
        match alice.try_acquire().unwrap() {
            Outcome::Acquired(grant) => {
                assert_eq!(grant.fence, fence + 1);
                fence = grant.fence;
            }
            // ... until she has kept it from him for the bound: that release was his.
            Outcome::Busy(holder) => break holder,
        }
    };
    assert_eq!(handed_on, None, "free, but for the line");
    assert!(fence > 1, "alice took it back at least once");
    match bob.acquire_step().unwrap() {
        Step::Done(Outcome::Acquired(grant)) => assert_eq!(grant.fence, fence + 1),
        other => panic!("bob's turn, but {other:?}"),
    }
    assert_eq!(bob.release(), Ok(Released::InTime));
    assert!(dir.entries("bed.queue").is_empty());
}

/// A free entry left unmarked does not say that nobody waits: a holder within its bound
/// releases unmarked while the line waits. Someone who takes it then (without a ticket, so
/// without reading the queue) used to hold unmarked, take the lock back after every release
/// and keep it from the line for as long as the first in line had no CPU to mark its entry
/// (runs of 20-37 acquisitions, 5 ms, with 8 looping plugin processes on 2 cores). It is
/// bounded like any holder: the waiter here never runs until the newcomer hands the lock on.
#[test]
fn under_bounded_fairness_a_newcomer_that_takes_a_kept_release_hands_it_on_after_the_bound() {
    let dir = TempDir::new("bounded-newcomer");
    let mut alice = open_bounded(&dir.0, "alice");
    assert_eq!(acquired(alice.acquire().unwrap()), 1);
    let mut bob = open_bounded(&dir.0, "bob");
    assert!(matches!(bob.acquire_step().unwrap(), Step::Sleep { .. }));
    assert!(dir.marked_at_fence(1), "bob marked the holder's entry");
    // Alice lets go within her bound: unmarked, for herself to take back.
    assert_eq!(alice.release(), Ok(Released::InTime));
    assert!(dir.state().starts_with("free."), "{}", dir.state());
    // Carol, who never queued, takes it first (bounded fairness allows it), and then loops.
    let mut carol = open_bounded(&dir.0, "carol");
    let mut fence = acquired(carol.try_acquire().unwrap());
    // Far beyond the bound (300 µs), so only a lock that is never handed on reaches it.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    let handed_on = loop {
        assert_eq!(carol.release(), Ok(Released::InTime));
        match carol.try_acquire().unwrap() {
            Outcome::Acquired(grant) => fence = grant.fence,
            Outcome::Busy(holder) => break holder,
        }
        assert!(
            std::time::Instant::now() < give_up,
            "carol kept the lock from the line for 10 s ({} acquisitions); state {}",
            fence - 1,
            dir.state()
        );
    };
    assert_eq!(handed_on, None, "free, but for the line");
    match bob.acquire_step().unwrap() {
        Step::Done(Outcome::Acquired(grant)) => assert_eq!(grant.fence, fence + 1),
        other => panic!("bob's turn, but {other:?}"),
    }
    assert_eq!(bob.release(), Ok(Released::InTime));
}

/// A caller that tries first and then waits (the lockbydir host does, to say once that it
/// waits) does not look twice in a row: the wait's first step takes the try's look.
#[test]
fn a_wait_right_after_a_busy_try_does_not_look_again() {
    let dir = TempDir::new("busy-look");
    let mut alice = open_bounded(&dir.0, "alice");
    acquired(alice.acquire().unwrap());
    let fs = HookedFs::new(&dir.0, Counting::default());
    let mut bob = Lock::new(fs.clone(), StdEnv::new(), "bed", Options::default()).unwrap();
    assert!(matches!(bob.try_acquire().unwrap(), Outcome::Busy(Some(_))));
    let looks = fs.hooks.looks();
    assert!(looks > 0, "the try looked");
    assert!(matches!(bob.acquire_step().unwrap(), Step::Sleep { .. }));
    // Only the queue's listing after its ticket, which every ticket made is followed by
    // (`two_waiters_that_join_at_once_...`); without the try's look, the lockdir and the
    // queue would have been listed before it too.
    assert_eq!(fs.hooks.looks(), looks + 1, "the first step did not look");
    assert_eq!(dir.entries("bed.queue").len(), 1, "bob queued");
    assert!(dir.marked_at_fence(1), "and marked the holder's entry");
    // Its next step looks as usual.
    let looks = fs.hooks.looks();
    let _ = bob.acquire_step().unwrap();
    assert!(fs.hooks.looks() > looks, "the second step looked");
    bob.cancel_wait();
    alice.release().unwrap();
}

/// A filesystem whose first listing of the queue runs `between` after reading it, before
/// returning: someone else joins the line between this waiter's look and its ticket.
struct JoinsDuringTheLook {
    between: std::cell::RefCell<Option<Box<dyn FnOnce()>>>,
}

impl Hooks for JoinsDuringTheLook {
    fn read_dir(&self, fs: &StdFs, path: &str) -> Result<Vec<String>, FsError> {
        let names = fs.read_dir(path);
        if path == "bed.queue"
            && let Some(between) = self.between.borrow_mut().take()
        {
            between();
        }
        names
    }
}

/// [`StdEnv`] with change notification, as a host with inotify has, that never sleeps
/// itself: the test steps the waits.
struct Notified(StdEnv);

impl Env for Notified {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.0.monotonic_ms()
    }
    fn sleep_ms(&self, ms: u64) {
        panic!("a step slept {ms} ms itself");
    }
    fn sleep_us(&self, us: u64) {
        panic!("a step slept {us} µs itself");
    }
    fn random_u64(&self) -> u64 {
        self.0.random_u64()
    }
    fn wakes_on_change(&self) -> bool {
        true
    }
    fn sleep_until_changed(&self, path: &str, us: u64) {
        panic!("a step slept on {path} for {us} µs itself");
    }
}

/// A first-come-first-served handle on `fs` whose waits are stepped, woken by changes.
fn stepped<F: Fs>(fs: F, holder: &str) -> Lock<F, Notified> {
    let options = Options {
        timeout_ms: 60_000,
        holder: holder.into(),
        fairness: Fairness::Fifo,
        ..Options::default()
    };
    Lock::new(fs, Notified(StdEnv::new()), "bed", options).unwrap()
}

/// Step `lock` until it holds the lock; its fence.
fn step_until_acquired<F: Fs>(lock: &mut Lock<F, Notified>) -> u64 {
    loop {
        match lock.acquire_step().unwrap() {
            Step::Done(outcome) => return acquired(outcome),
            Step::Sleep { .. } => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

#[test]
fn two_waiters_that_join_at_once_behind_the_same_one_know_which_of_them_is_next() {
    let dir = TempDir::new("join-at-once");
    let mut alice = open(&dir.0, "alice");
    acquired(alice.acquire().unwrap());
    let mut dave = stepped(StdFs::new(&dir.0), "dave");
    assert!(matches!(dave.acquire_step().unwrap(), Step::Sleep { .. }));
    // Carol joins behind dave while bob looks: bob's look does not show her ticket, made
    // before his and so ahead of him (a few milliseconds earlier, so that the order is not
    // the tokens' toss). Both saw dave last.
    let carol = Rc::new(std::cell::RefCell::new(stepped(
        StdFs::new(&dir.0),
        "carol",
    )));
    let joining = Rc::clone(&carol);
    let fs = HookedFs::new(
        &dir.0,
        JoinsDuringTheLook {
            between: std::cell::RefCell::new(Some(Box::new(move || {
                let step = joining.borrow_mut().acquire_step().unwrap();
                assert!(matches!(step, Step::Sleep { .. }), "{step:?}");
                std::thread::sleep(Duration::from_millis(3));
            }))),
        },
    );
    let mut bob = stepped(fs, "bob");
    assert!(matches!(bob.acquire_step().unwrap(), Step::Sleep { .. }));
    assert_eq!(dir.entries("bed.queue").len(), 3, "all three queued");
    // Dave is served; carol and bob each learn it from his ticket's removal.
    assert_eq!(alice.release(), Ok(Released::InTime));
    assert_eq!(step_until_acquired(&mut dave), 2);
    assert!(matches!(
        carol.borrow_mut().acquire_step().unwrap(),
        Step::Sleep { .. }
    ));
    assert!(matches!(bob.acquire_step().unwrap(), Step::Sleep { .. }));
    assert_eq!(dave.release(), Ok(Released::InTime));
    // Bob, stepping first after the release, must leave the lock to carol.
    for _ in 0..3 {
        assert!(
            matches!(bob.acquire_step().unwrap(), Step::Sleep { .. }),
            "bob took the lock from carol, ahead of him: {:?}",
            dir.state()
        );
    }
    assert_eq!(step_until_acquired(&mut *carol.borrow_mut()), 3);
    assert_eq!(carol.borrow_mut().release(), Ok(Released::InTime));
    assert_eq!(step_until_acquired(&mut bob), 4);
    bob.release().unwrap();
}
