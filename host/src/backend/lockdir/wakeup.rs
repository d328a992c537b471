//! Precise sleeps for the lock component, which the change it waits for cuts short.
//!
//! The lock component waits for a busy lock by sleeping (`std::thread::sleep` in the guest:
//! `wasi:clocks/monotonic-clock.subscribe-duration`, then `wasi:io/poll`). wasmtime-wasi
//! implements that pollable as a tokio timer, and tokio timers tick in whole milliseconds: a
//! 100 µs pause lasts 1-2 ms, a 1 ms pause about 2 ms. Waiters that poll every 100-200 µs need
//! better, so [`shadow_monotonic_clock`] replaces the two `subscribe-*` functions for the lock
//! component's Store with pollables that block the calling thread on a [`Condvar`] until
//! their deadline (the OS timer: tens of µs late, not milliseconds).
//!
//! **Exact wake-ups.** Where the service offers them (`LOCKBYDIR_WAKEUPS=stat-at` in the lock
//! component's environment, see the parent module), a waiter asks to be woken by `stat`ing
//! the entry it waits on just before it sleeps; `crate::watched_stat` sees that stat, watches
//! the entry ([`Sleeper::watch_before_stat`], through `crate::watch`) before making it, and
//! the next sleep ([`Sleeper::subscribe`]) ends when that name is renamed away or removed, by
//! any process, or at its deadline. Only that sleep: the watch is dropped with it, and a host
//! call into the component ([`Sleeper::observe`]) drops a watch no sleep took.
//!
//! **Releases in this process.** A short sleep *without* such a watch (at most [`WAKEABLE`]:
//! polling waiters near the head of the line sleep that little; this is the polling fallback,
//! and the only wake-up a component that does not ask gets) also ends as soon as a lock
//! service of this process on the same lock directory reports a release
//! ([`Sleeper::wake_all`]): the next waiter in this process holds the lock tens of µs after it
//! is given up instead of at its next poll. Longer unwatched waits are not woken: with
//! hundreds of waiters, waking them all at every release would make each look at the lock for
//! nothing. A watched sleep ignores those releases: its own watch sees every change that
//! matters to it, including the ones this process makes, and no other. A wake-up of either
//! kind is only a hint: the guest looks at the lock again after every sleep, so waking early
//! costs one look and is never wrong, and a lost one costs the rest of the sleep.
//!
//! A lock service's waits can also be cancelled from another thread (`Sleeper::cancel`, used
//! by `exec` when a signal arrives while it waits). The lock component has no notion of being
//! cancelled, but it measures its patience on the monotonic clock, which this module supplies:
//! once cancelled, every sleep returns at once and moves that clock on by [`CANCEL_JUMP`]
//! (146 years), so any patience shorter than that runs out at the component's next look, and
//! `acquire` returns `busy` through its ordinary path, which withdraws its queue ticket. Its
//! wall clock (deadlines, takeovers) is untouched.
//!
//! Blocking inside a pollable is right here because the lock component's Store is used
//! synchronously: `add_to_linker_sync` runs `pollable.block` and `poll` in a `block_on` on
//! the calling thread, the very thread that called into the lock component, which has nothing
//! else to do meanwhile. Only the lock component's Store is affected: a plugin's own sleeps
//! keep wasmtime-wasi's implementation.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use super::watch::{Bell, Registration, Watcher};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// Sleeps up to this long end early at a release in the same directory; longer ones do not.
pub(crate) const WAKEABLE: Duration = Duration::from_millis(10);

/// How far a cancelled service's monotonic clock moves at each of its sleeps: 2^62 ns, about
/// 146 years. Patience longer than [`MAX_CANCELLABLE_PATIENCE_MS`] would not run out.
pub(crate) const CANCEL_JUMP: Duration = Duration::from_nanos(1 << 62);

/// The longest patience a `Sleeper::cancel` can end (about 100 years; ask for at most this
/// instead of forever).
pub const MAX_CANCELLABLE_PATIENCE_MS: u64 = 100 * 365 * 24 * 3_600_000;

/// Every lock directory some lock service of this process works in, by canonical path.
/// Entries die with the last service on their directory.
static DIRS: LazyLock<Mutex<HashMap<PathBuf, Weak<DirWakeups>>>> = LazyLock::new(Default::default);

/// The wake-ups of one lock directory: a generation counter that every release bumps.
#[derive(Default)]
struct DirWakeups {
    generation: Mutex<u64>,
    changed: Condvar,
    /// How many sleeps wait on `changed` (changed only under `generation`'s mutex): a
    /// release with nobody asleep makes no system call (a condvar's `notify_all` always
    /// makes one).
    sleepers: AtomicUsize,
}

impl DirWakeups {
    fn lock(&self) -> MutexGuard<'_, u64> {
        // A counter cannot be left half-updated: a poisoned lock is still good.
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Block until the generation differs from `seen`, `deadline` (never, if `None`) passes
    /// or `cancelled` is set; return the generation then.
    fn wait(&self, seen: u64, deadline: Option<Instant>, cancelled: &AtomicBool) -> u64 {
        let mut generation = self.lock();
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        while *generation == seen && !cancelled.load(Ordering::SeqCst) {
            generation = match deadline {
                None => self
                    .changed
                    .wait(generation)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    let (generation, _) = self
                        .changed
                        .wait_timeout(generation, left)
                        .unwrap_or_else(PoisonError::into_inner);
                    generation
                }
            };
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        *generation
    }

    /// Bump the generation, and wake the sleeps waiting on it, if any.
    fn bump(&self) {
        let mut generation = self.lock();
        *generation += 1;
        // Read under the mutex: a sleep counted later sees the new generation and returns.
        let asleep = self.sleepers.load(Ordering::SeqCst) > 0;
        drop(generation);
        if asleep {
            self.changed.notify_all();
        }
    }
}

/// One lock service's sleeps: which directory's releases end them, and the last generation
/// its lock component can have seen.
pub(crate) struct Sleeper {
    dir: Arc<DirWakeups>,
    /// The directory's generation when the lock component last started looking at the lock
    /// directory: a release after that ends its next sleep at once, so none is missed.
    seen: AtomicU64,
    /// Set by `Sleeper::cancel`: sleeps end at once and move the clock on.
    cancelled: AtomicBool,
    /// How far this service's monotonic clock is ahead of the real one (nanoseconds).
    skipped_ns: AtomicU64,
    /// What the sleeps that a release does not end wait on, so that a cancel (and, for a
    /// watched sleep, a change of its entry) ends them.
    bell: Arc<Bell>,
    /// Where this service's waits can be watched: `None` when wake-ups are not offered.
    watching: Option<Watching>,
    /// The entry the lock component asked to be woken for (by `stat`ing it) since the host
    /// last called into it: it ends the next sleep when it changes.
    pending: Mutex<Option<Registration>>,
    /// The last directory descriptor the lock component stated through, and whether it is
    /// the lock directory's.
    known_descriptor: Mutex<Option<(Weak<std::fs::File>, bool)>>,
    /// Counts, for [`WaitStats`].
    stat_at_calls: AtomicU64,
    watched_sleeps: AtomicU64,
    woken_sleeps: AtomicU64,
}

/// Where a lock service's waits are watched: its lock directory, as the host names it and as
/// the lock component's preopen is (device and inode, to recognize its descriptor).
pub(crate) struct Watching {
    watcher: &'static Watcher,
    lock_dir: PathBuf,
    identity: (u64, u64),
}

/// How a lock service's waits went, since it was made: see [`super::LockDirBackend::wait_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// `stat-at` calls of the lock component (every one: with wake-ups, its request to be
    /// woken; without, the look of a polling waiter at the state entry).
    pub stat_at_calls: u64,
    /// Sleeps that a watch could end.
    pub watched_sleeps: u64,
    /// Of those, how many a change of the watched entry ended.
    pub woken_sleeps: u64,
}

impl Sleeper {
    /// End this backend's waits from any thread (a signal handler's, say): the current sleep
    /// ends, and every later one returns at once, so its `acquire` calls return `busy` at
    /// their next look, having left the queue. Cancelling is for good.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        // Under each sleep's mutex, so that a sleep about to wait cannot miss it.
        self.bell.ring();
        drop(self.dir.lock());
        self.dir.changed.notify_all();
    }

    /// The sleeper of a lock service working in `lock_dir`. Services on the same directory
    /// (after resolving symlinks) wake one another; with `watcher`, the lock component's
    /// sleeps can also be ended by changes to the entries it asks for.
    pub(crate) fn new(lock_dir: &Path, watcher: Option<&'static Watcher>) -> Arc<Sleeper> {
        let key = lock_dir
            .canonicalize()
            .unwrap_or_else(|_| lock_dir.to_owned());
        let mut dirs = DIRS.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = match dirs.get(&key).and_then(Weak::upgrade) {
            Some(dir) => dir,
            None => {
                dirs.retain(|_, dir| dir.strong_count() > 0);
                let dir = Arc::new(DirWakeups::default());
                dirs.insert(key.clone(), Arc::downgrade(&dir));
                dir
            }
        };
        let seen = AtomicU64::new(*dir.lock());
        let watching = watcher.and_then(|watcher| {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&key).ok()?;
            Some(Watching {
                watcher,
                lock_dir: key.clone(),
                identity: (meta.dev(), meta.ino()),
            })
        });
        Arc::new(Sleeper {
            dir,
            seen,
            cancelled: AtomicBool::new(false),
            skipped_ns: AtomicU64::new(0),
            bell: Arc::default(),
            watching,
            pending: Mutex::new(None),
            known_descriptor: Mutex::new(None),
            stat_at_calls: AtomicU64::new(0),
            watched_sleeps: AtomicU64::new(0),
            woken_sleeps: AtomicU64::new(0),
        })
    }

    /// Whether this service's sleeps can be ended by watches.
    pub(crate) fn watches(&self) -> bool {
        self.watching.is_some()
    }

    /// The counts so far.
    pub(crate) fn stats(&self) -> WaitStats {
        WaitStats {
            stat_at_calls: self.stat_at_calls.load(Ordering::Relaxed),
            watched_sleeps: self.watched_sleeps.load(Ordering::Relaxed),
            woken_sleeps: self.woken_sleeps.load(Ordering::Relaxed),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Option<Registration>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock component is about to `stat` `path` through the directory `descriptor` (its
    /// preopen, if it is the lock directory's): if `path` names an entry of a lockdir or a
    /// queue, watch it, so that its change ends the next sleep. Call before the real stat,
    /// then [`Sleeper::stat_done`] with the stat's outcome.
    pub(crate) fn watch_before_stat(
        &self,
        descriptor: &Arc<std::fs::File>,
        path: &str,
    ) -> Option<Registration> {
        self.stat_at_calls.fetch_add(1, Ordering::Relaxed);
        let watching = self.watching.as_ref()?;
        let (dir, name) = watched_entry(path)?;
        if !self.is_lock_dir(descriptor, watching) {
            return None;
        }
        // An entry that cannot be watched (gone, or inotify's limit reached): this sleep
        // is a plain one, as without wake-ups.
        watching
            .watcher
            .register(
                &watching.lock_dir.join(dir),
                name.as_ref(),
                Arc::clone(&self.bell),
            )
            .ok()
    }

    /// Whether `descriptor` is the lock directory's: by device and inode, asked once per
    /// descriptor (the lock component stats through its preopen every time).
    fn is_lock_dir(&self, descriptor: &Arc<std::fs::File>, watching: &Watching) -> bool {
        let mut known = self
            .known_descriptor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The `Weak` keeps the allocation: while it is held, no other descriptor has this
        // address.
        if let Some((seen, is)) = &*known
            && std::ptr::eq(seen.as_ptr(), Arc::as_ptr(descriptor))
        {
            return *is;
        }
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = descriptor.metadata() else {
            return false;
        };
        let is = (meta.dev(), meta.ino()) == watching.identity;
        *known = Some((Arc::downgrade(descriptor), is));
        is
    }

    /// A `stat-at` through a descriptor that is no directory: only counted.
    pub(crate) fn watch_before_stat_of_file(&self) -> Option<Registration> {
        self.stat_at_calls.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The stat that [`Sleeper::watch_before_stat`] prepared for has been made: if the entry
    /// is there, the next sleep waits for its change (if it is gone, the lock component does
    /// not sleep for it, and the watch is dropped).
    pub(crate) fn stat_done(&self, registration: Option<Registration>, found: bool) {
        if let Some(registration) = registration
            && found
        {
            *self.pending() = Some(registration);
        }
    }

    /// The lock component is about to look at the lock directory: from now on, a release
    /// ends its next sleep. Call before every call into it.
    pub(crate) fn observe(&self) {
        self.seen.store(*self.dir.lock(), Ordering::Relaxed);
        // A request to be woken lasts until the next sleep of the same call, no longer.
        self.pending().take();
    }

    /// A lock in this directory was released: end the current sleep of every lock service of
    /// this process on it (their own included; it is never asleep when this is called).
    pub(crate) fn wake_all(&self) {
        self.dir.bump();
    }

    /// This process released the lock whose lockdir is `lockdir` (its name in the lock
    /// directory): [`Sleeper::wake_all`], and end now the watched sleeps of this process on
    /// that lockdir's state entry (the first in line), which the kernel's event would end a
    /// thread switch later (see [`Watcher::ring_dir`]).
    pub(crate) fn released(&self, lockdir: &str) {
        self.wake_all();
        if let Some(watching) = &self.watching {
            watching.watcher.ring_dir(&watching.lock_dir.join(lockdir));
        }
    }

    /// The lock directory as watches name it (resolved), if this service's waits are watched.
    pub(crate) fn watched_lock_dir(&self) -> Option<&Path> {
        self.watching.as_ref().map(|w| w.lock_dir.as_path())
    }

    /// Whether the waits were cancelled.
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// A sleep of a cancelled service: the clock jumps past every patience.
    fn skip(&self) {
        let jump = CANCEL_JUMP.as_nanos() as u64;
        let _ = self
            .skipped_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                Some(s.saturating_add(jump))
            });
    }

    /// How far the clock was moved on by cancelled sleeps, in nanoseconds.
    fn skipped(&self) -> u64 {
        self.skipped_ns.load(Ordering::SeqCst)
    }

    /// Sleep until `deadline` (never, if `None`), a cancel, or `watch` firing.
    fn sleep_alone(&self, deadline: Option<Instant>, watch: Option<&Registration>) {
        let mut guard = self.bell.lock();
        while !self.is_cancelled() && !watch.is_some_and(Registration::fired) {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            guard = self.bell.wait(guard, left);
        }
    }

    /// A pollable that is ready `duration` from now, or at a wake-up if that comes first.
    fn subscribe(
        self: &Arc<Self>,
        table: &mut wasmtime::component::ResourceTable,
        duration: Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let sleep = table.push(self.sleep(duration))?;
        subscribe(table, sleep)
    }

    /// The next sleep, `duration` long: it takes the pending watch, if any.
    fn sleep(self: &Arc<Self>, duration: Duration) -> Sleep {
        let watch = self.pending().take();
        if watch.is_some() {
            self.watched_sleeps.fetch_add(1, Ordering::Relaxed);
        }
        Sleep {
            sleeper: Arc::clone(self),
            wakeable: duration <= WAKEABLE,
            watch,
            // Unrepresentably far away: wait for a wake-up only (as wasmtime-wasi waits forever).
            deadline: Instant::now().checked_add(duration),
        }
    }
}

/// `(directory, entry)` if `path` names an entry directly inside a lockdir or a queue
/// (`N.lockdir/held.…`, `N.queue/wait.…`): the only stats that ask for a wake-up.
fn watched_entry(path: &str) -> Option<(&str, &str)> {
    let (dir, name) = path.split_once('/')?;
    let one = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('/');
    let kind = [".lockdir", ".queue"]
        .into_iter()
        .any(|suffix| dir.len() > suffix.len() && dir.ends_with(suffix));
    (kind && one(dir) && one(name)).then_some((dir, name))
}

/// The `pollable` behind the lock component's `subscribe-duration` and `subscribe-instant`.
struct Sleep {
    sleeper: Arc<Sleeper>,
    /// Whether a release in this process ends it early (if it has no watch).
    wakeable: bool,
    /// The entry whose change ends it, if the lock component asked for one.
    watch: Option<Registration>,
    deadline: Option<Instant>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        let sleeper = Arc::clone(&self.sleeper);
        if sleeper.is_cancelled() {
            sleeper.skip();
            return;
        }
        // A zero or past deadline is ready at once (a yield, or the end of a timed-out wait).
        if self.deadline.is_some_and(|d| d <= Instant::now()) {
            return;
        }
        // Pending once, waking at once: `pollable.ready` (which polls exactly once) answers
        // "not yet" instead of blocking; `block` and `poll` poll again straight away.
        PendingOnce(false).await;
        if let Some(watch) = &self.watch {
            // The exact wake-up: only a change of the entry waited on ends it (a release in
            // this process makes one too), not every release in the directory.
            sleeper.sleep_alone(self.deadline, Some(watch));
            if watch.fired() {
                sleeper.woken_sleeps.fetch_add(1, Ordering::Relaxed);
            }
        } else if !self.wakeable && self.deadline.is_some() {
            sleeper.sleep_alone(self.deadline, None);
        } else {
            let seen = sleeper.seen.load(Ordering::Relaxed);
            let now = sleeper.dir.wait(seen, self.deadline, &sleeper.cancelled);
            sleeper.seen.store(now, Ordering::Relaxed);
        }
        if sleeper.is_cancelled() {
            sleeper.skip();
        }
    }
}

/// Pending at its first poll (having asked to be polled again), ready at the next.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What the shadowing `wasi:clocks/monotonic-clock` works on: wasmtime-wasi's clocks and
/// resource table, and the lock service's [`Sleeper`].
pub(crate) struct ClockView<'a> {
    /// wasmtime-wasi's clocks (for `now` and `resolution`) and the Store's resource table.
    pub clocks: WasiClocksCtxView<'a>,
    /// Whose releases end the sleeps.
    pub sleeper: &'a Arc<Sleeper>,
}

struct HasClockView;

impl HasData for HasClockView {
    type Data<'a> = ClockView<'a>;
}

impl monotonic_clock::Host for ClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        let now = monotonic_clock::Host::now(&mut self.clocks)?;
        Ok(now.saturating_add(self.sleeper.skipped()))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        monotonic_clock::Host::resolution(&mut self.clocks)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(self)?;
        let duration = Duration::from_nanos(when.saturating_sub(now));
        self.sleeper.subscribe(self.clocks.table, duration)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.sleeper
            .subscribe(self.clocks.table, Duration::from_nanos(duration))
    }
}

/// Replace `wasi:clocks/monotonic-clock`, already in `linker` from wasmtime-wasi, with the
/// precise, wakeable one. Call after `wasmtime_wasi::p2::add_to_linker_sync`.
///
/// It is defined under the very name wasmtime-wasi used (its bindings' version, 0.2.x), and
/// the linker resolves every semver-compatible import to that one definition: the lock
/// component imports the interface twice (`@0.2.0` from wasi-libc, a later 0.2.x from the
/// `wasip2` crate) and both get this one.
pub(crate) fn shadow_monotonic_clock<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ClockView<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = monotonic_clock::add_to_linker::<T, HasClockView>(linker, view);
    linker.allow_shadowing(false);
    added
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    /// Poll a sleep to the end on this thread, as `pollable.block` does.
    fn block(sleep: &mut Sleep) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut ready = sleep.ready();
        while ready.as_mut().poll(&mut cx).is_pending() {}
    }

    #[test]
    fn only_a_past_deadline_is_ready_at_first_look() {
        let sleeper = Sleeper::new(&std::env::temp_dir(), None);
        let mut cx = Context::from_waker(Waker::noop());
        let at = |deadline| Sleep {
            sleeper: Arc::clone(&sleeper),
            wakeable: true,
            watch: None,
            deadline: Some(deadline),
        };
        let now = Instant::now();
        assert!(at(now).ready().as_mut().poll(&mut cx).is_ready());
        // `pollable.ready` polls once: it must answer "not yet", not block for an hour.
        let later = now + Duration::from_secs(3600);
        assert!(at(later).ready().as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn a_release_in_the_same_directory_ends_a_sleep() {
        let dir = std::env::temp_dir().join(format!("lockbydir-wakeup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let waiter = Sleeper::new(&dir, None);
        waiter.observe();
        // Another spelling of the same directory; before the sleep or during it, either way
        // the wake-up ends it (without it, this sleep would never end).
        let releaser = Sleeper::new(&dir.join("."), None);
        let wake = std::thread::spawn(move || releaser.wake_all());
        block(&mut Sleep {
            sleeper: waiter,
            wakeable: true,
            watch: None,
            deadline: None,
        });
        wake.join().unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_cancel_ends_a_long_sleep_and_moves_the_clock_past_any_patience() {
        let sleeper = Sleeper::new(&std::env::temp_dir(), None);
        let cancel = Arc::clone(&sleeper);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            cancel.cancel();
        });
        // Without the cancel, this would sleep for an hour.
        block(&mut Sleep {
            sleeper: Arc::clone(&sleeper),
            wakeable: false,
            watch: None,
            deadline: Some(Instant::now() + Duration::from_secs(3600)),
        });
        canceller.join().unwrap();
        let skipped_ms = sleeper.skipped() / 1_000_000;
        assert!(skipped_ms > MAX_CANCELLABLE_PATIENCE_MS, "{skipped_ms}");
        // And later sleeps do not sleep at all.
        block(&mut Sleep {
            sleeper: Arc::clone(&sleeper),
            wakeable: true,
            watch: None,
            deadline: None,
        });
    }

    #[test]
    fn a_long_sleep_is_not_cut_short_by_a_release() {
        let dir = std::env::temp_dir().join(format!("lockbydir-nowake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let waiter = Sleeper::new(&dir, None);
        waiter.observe();
        let releaser = Sleeper::new(&dir, None);
        releaser.wake_all();
        let start = Instant::now();
        let length = WAKEABLE + Duration::from_millis(20);
        block(&mut Sleep {
            sleeper: waiter,
            wakeable: false,
            watch: None,
            deadline: Some(start + length),
        });
        // Woken by the release, it would have returned at once.
        assert!(start.elapsed() >= length);
        std::fs::remove_dir(&dir).unwrap();
    }

    /// A fresh directory with entries `names` (directories, as the protocol makes them), and
    /// a sleeper on it that watches, as a service with wake-ups has.
    fn watched_dir(tag: &str, names: &[&str]) -> (PathBuf, Arc<Sleeper>) {
        let dir =
            std::env::temp_dir().join(format!("lockbydir-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for name in names {
            std::fs::create_dir_all(dir.join("bed.lockdir").join(name)).unwrap();
        }
        let watcher = Watcher::global().expect("inotify is available to the tests");
        (dir.clone(), Sleeper::new(&dir, Some(watcher)))
    }

    /// What the lock component's `sleep_until_changed(path)` does: a watched stat, then a
    /// sleep of `duration` (None if the entry was gone: no sleep at all).
    fn stat_and_sleep(
        sleeper: &Arc<Sleeper>,
        dir: &Path,
        path: &str,
        duration: Duration,
    ) -> Option<Sleep> {
        sleeper.observe();
        let preopen = Arc::new(std::fs::File::open(dir).unwrap());
        let registration = sleeper.watch_before_stat(&preopen, path);
        let found = dir.join(path).exists();
        sleeper.stat_done(registration, found);
        found.then(|| sleeper.sleep(duration))
    }

    #[test]
    fn only_stats_through_the_lock_directory_s_own_descriptor_are_watched() {
        let (dir, sleeper) = watched_dir("which", &["held.1"]);
        let (elsewhere, _) = watched_dir("which-other", &["held.1"]);
        let open = |dir: &Path| Arc::new(std::fs::File::open(dir).unwrap());
        let (lock_dir, other) = (open(&dir), open(&elsewhere));
        let path = "bed.lockdir/held.1";
        // The same entry's name through another directory, between two through the lock
        // directory: each answer is for its own descriptor, not the one asked before.
        assert!(sleeper.watch_before_stat(&lock_dir, path).is_some());
        assert!(sleeper.watch_before_stat(&other, path).is_none());
        assert!(sleeper.watch_before_stat(&lock_dir, path).is_some());
        // A new descriptor of the lock directory, after the first was closed.
        drop(lock_dir);
        assert!(sleeper.watch_before_stat(&open(&dir), path).is_some());
        assert!(sleeper.watch_before_stat(&other, path).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }

    /// Run `program args` as another process, to completion.
    fn run(program: &str, args: &[&Path]) {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "{program} failed");
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn a_watched_sleep_ends_when_another_process_renames_or_removes_the_entry() {
        let (dir, sleeper) = watched_dir("other", &["held.1", "held.2"]);
        let lockdir = dir.join("bed.lockdir");
        // Renamed away by `mv` in another process: without the watch, an hour's sleep.
        let mut sleep = stat_and_sleep(&sleeper, &dir, "bed.lockdir/held.1", LONG).unwrap();
        let mover = {
            let (from, to) = (lockdir.join("held.1"), lockdir.join("free.1"));
            std::thread::spawn(move || run("mv", &[&from, &to]))
        };
        block(&mut sleep);
        mover.join().unwrap();
        // Removed by `rmdir` in another process.
        let mut sleep = stat_and_sleep(&sleeper, &dir, "bed.lockdir/held.2", LONG).unwrap();
        let remover = {
            let path = lockdir.join("held.2");
            std::thread::spawn(move || run("rmdir", &[&path]))
        };
        block(&mut sleep);
        remover.join().unwrap();
        let stats = sleeper.stats();
        assert_eq!(
            (stats.watched_sleeps, stats.woken_sleeps),
            (2, 2),
            "{stats:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_release_by_this_process_ends_a_watched_sleep_on_that_lockdir_at_once() {
        // The services name the directory through a symlink: the watches and the release's
        // ring must still meet (both use the resolved path).
        let (dir, waiter) = watched_dir("ring", &["held.1"]);
        let link = dir.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let releaser = Sleeper::new(&link, Watcher::global());
        let other = watched_dir("ring-other", &["held.1"]);
        // Bounded, so that a ring that never comes fails the test instead of hanging it.
        let mut sleep =
            stat_and_sleep(&waiter, &dir, "bed.lockdir/held.1", Duration::from_secs(20)).unwrap();
        let mut elsewhere = stat_and_sleep(
            &other.1,
            &other.0,
            "bed.lockdir/held.1",
            Duration::from_millis(100),
        )
        .unwrap();
        // Nothing is renamed on disk, so no event can end the sleep: only the ring does.
        releaser.released("bed.lockdir");
        block(&mut sleep);
        assert_eq!(waiter.stats().woken_sleeps, 1);
        // A release in another lock directory rings nothing here.
        block(&mut elsewhere);
        assert_eq!(other.1.stats().woken_sleeps, 0);
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&other.0).unwrap();
    }

    #[test]
    fn a_change_wakes_only_the_sleeper_watching_that_entry() {
        let (dir, first) = watched_dir("herd", &["wait.1", "wait.2"]);
        let second = Sleeper::new(&dir, Watcher::global());
        let lockdir = dir.join("bed.lockdir");
        let mut first_sleep = stat_and_sleep(&first, &dir, "bed.lockdir/wait.1", LONG).unwrap();
        // Long enough to be still asleep when the first wakes, short enough to end the test.
        let second_sleep =
            stat_and_sleep(&second, &dir, "bed.lockdir/wait.2", Duration::from_secs(2));
        let mut second_sleep = second_sleep.unwrap();
        let other = std::thread::spawn(move || block(&mut second_sleep));
        run("mv", &[&lockdir.join("wait.1"), &lockdir.join("free.1")]);
        block(&mut first_sleep);
        other.join().unwrap();
        assert_eq!(first.stats().woken_sleeps, 1);
        // The second ran to its deadline: the rename of another name did not wake it.
        assert_eq!(second.stats().woken_sleeps, 0);
        assert_eq!(second.stats().watched_sleeps, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_entry_already_gone_is_not_slept_on_and_a_change_before_the_sleep_is_not_missed() {
        let (dir, sleeper) = watched_dir("gone", &["held.1"]);
        // Gone before the stat: no watch is kept, and the next sleep is a plain one.
        assert!(stat_and_sleep(&sleeper, &dir, "bed.lockdir/held.9", LONG).is_none());
        let mut plain = sleeper.sleep(Duration::from_millis(1));
        assert!(plain.watch.is_none());
        block(&mut plain);
        // Gone between the stat and the sleep: the sleep returns at once.
        let mut sleep = stat_and_sleep(&sleeper, &dir, "bed.lockdir/held.1", LONG).unwrap();
        run("rmdir", &[&dir.join("bed.lockdir/held.1")]);
        block(&mut sleep);
        assert_eq!(sleeper.stats().woken_sleeps, 1);
        drop(sleep);
        // Every watch is gone with its sleeps: nothing of this test's directory is watched.
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_watched_sleep_without_a_change_ends_at_its_deadline() {
        let (dir, sleeper) = watched_dir("lost", &["held.1"]);
        let start = Instant::now();
        let length = Duration::from_millis(50);
        let mut sleep = stat_and_sleep(&sleeper, &dir, "bed.lockdir/held.1", length).unwrap();
        block(&mut sleep);
        assert!(start.elapsed() >= length);
        assert_eq!(sleeper.stats().woken_sleeps, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cancel_ends_a_watched_sleep() {
        let (dir, sleeper) = watched_dir("cancel", &["held.1"]);
        let mut sleep = stat_and_sleep(&sleeper, &dir, "bed.lockdir/held.1", LONG).unwrap();
        let cancel = Arc::clone(&sleeper);
        let canceller = std::thread::spawn(move || cancel.cancel());
        block(&mut sleep);
        canceller.join().unwrap();
        assert_eq!(sleeper.stats().woken_sleeps, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_entries_of_lockdirs_and_queues_are_watched() {
        assert_eq!(
            watched_entry("bed.lockdir/held.1"),
            Some(("bed.lockdir", "held.1"))
        );
        assert_eq!(
            watched_entry("bed.queue/wait.1"),
            Some(("bed.queue", "wait.1"))
        );
        for path in [
            "bed.lockdir",
            ".lockdir/x",
            "bed.lockdir/",
            "bed.lockdir/..",
            "a/b",
            "bed.lockdir/a/b",
            "x/bed.lockdir",
        ] {
            assert_eq!(watched_entry(path), None, "{path}");
        }
    }

    /// Not a test: how long from a rename to the return of the sleep watching that name
    /// (`cargo test --release --lib -- --ignored --nocapture wake_latency`).
    #[test]
    #[ignore]
    fn wake_latency() {
        let rounds = 500;
        let names: Vec<String> = (0..rounds).map(|i| format!("held.{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (dir, sleeper) = watched_dir("latency", &refs);
        let mut micros = Vec::new();
        for name in &names {
            let path = format!("bed.lockdir/{name}");
            let mut sleep = stat_and_sleep(&sleeper, &dir, &path, LONG).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let sleeper_thread = std::thread::spawn(move || {
                block(&mut sleep);
                tx.send(Instant::now()).unwrap();
            });
            // Let the sleeper block first.
            std::thread::sleep(Duration::from_millis(2));
            let lockdir = dir.join("bed.lockdir");
            let renamed = Instant::now();
            std::fs::rename(lockdir.join(name), lockdir.join(format!("free.{name}"))).unwrap();
            let woke = rx.recv().unwrap();
            sleeper_thread.join().unwrap();
            micros.push(woke.duration_since(renamed).as_secs_f64() * 1e6);
        }
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
        println!(
            "rename -> woken sleep returns, {rounds} rounds: median {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
