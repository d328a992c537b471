//! Precise sleeps for the lock component, which a release in this process cuts short.
//!
//! The lock component waits for a busy lock by sleeping (`std::thread::sleep` in the guest:
//! `wasi:clocks/monotonic-clock.subscribe-duration`, then `wasi:io/poll`). wasmtime-wasi
//! implements that pollable as a tokio timer, and tokio timers tick in whole milliseconds: a
//! 100 µs pause lasts 1-2 ms, a 1 ms pause about 2 ms. Waiters that poll every 100-200 µs need
//! better, so [`shadow_monotonic_clock`] replaces the two `subscribe-*` functions for the lock
//! component's Store with pollables that block the calling thread on a [`Condvar`] until
//! their deadline (the OS timer: tens of µs late, not milliseconds).
//!
//! A short wait (at most [`WAKEABLE`]: the waiters near the head of the line sleep that little)
//! also ends as soon as a lock service of this process on the same lock directory reports a
//! release ([`Sleeper::wake_all`]): the next waiter in this process holds the lock tens of µs
//! after it is given up instead of at its next poll. Longer waits (waiters further back in
//! line) are not woken: with hundreds of waiters, waking them all at every release would
//! make each look at the lock for nothing. Waiters in other processes are not
//! woken; they poll, as before. A wake-up is only a hint: the guest looks at the lock again
//! after every sleep, so waking early (for another lock of the directory, or for a release
//! that someone else won) costs one look and is never wrong.
//!
//! A lock service's waits can also be cancelled from another thread ([`WaitCanceller`], used
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
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

/// The longest patience a [`WaitCanceller`] can end (about 100 years; ask for at most this
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
        *generation
    }
}

/// One lock service's sleeps: which directory's releases end them, and the last generation
/// its lock component can have seen.
pub(crate) struct Sleeper {
    dir: Arc<DirWakeups>,
    /// The directory's generation when the lock component last started looking at the lock
    /// directory: a release after that ends its next sleep at once, so none is missed.
    seen: AtomicU64,
    /// Set by [`WaitCanceller::cancel`]: sleeps end at once and move the clock on.
    cancelled: AtomicBool,
    /// How far this service's monotonic clock is ahead of the real one (nanoseconds).
    skipped_ns: AtomicU64,
    /// What the sleeps that a release does not end wait on, so that a cancel ends them.
    alone: (Mutex<()>, Condvar),
}

impl Sleeper {
    /// The sleeper of a lock service working in `lock_dir`. Services on the same directory
    /// (after resolving symlinks) wake one another.
    pub(crate) fn new(lock_dir: &Path) -> Arc<Sleeper> {
        let key = lock_dir
            .canonicalize()
            .unwrap_or_else(|_| lock_dir.to_owned());
        let mut dirs = DIRS.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = match dirs.get(&key).and_then(Weak::upgrade) {
            Some(dir) => dir,
            None => {
                dirs.retain(|_, dir| dir.strong_count() > 0);
                let dir = Arc::new(DirWakeups::default());
                dirs.insert(key, Arc::downgrade(&dir));
                dir
            }
        };
        let seen = AtomicU64::new(*dir.lock());
        Arc::new(Sleeper {
            dir,
            seen,
            cancelled: AtomicBool::new(false),
            skipped_ns: AtomicU64::new(0),
            alone: (Mutex::new(()), Condvar::new()),
        })
    }

    /// The lock component is about to look at the lock directory: from now on, a release
    /// ends its next sleep. Call before every call into it.
    pub(crate) fn observe(&self) {
        self.seen.store(*self.dir.lock(), Ordering::Relaxed);
    }

    /// A lock in this directory was released: end the current sleep of every lock service of
    /// this process on it (their own included; it is never asleep when this is called).
    pub(crate) fn wake_all(&self) {
        *self.dir.lock() += 1;
        self.dir.changed.notify_all();
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

    /// Sleep until `deadline` or a cancel.
    fn sleep_alone(&self, deadline: Instant) {
        let (lock, cancelled) = &self.alone;
        let mut guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = cancelled
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A pollable that is ready `duration` from now, or at a wake-up if that comes first.
    fn subscribe(
        self: &Arc<Self>,
        table: &mut wasmtime::component::ResourceTable,
        duration: Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let sleep = Sleep {
            sleeper: Arc::clone(self),
            wakeable: duration <= WAKEABLE,
            // Unrepresentably far away: wait for a wake-up only (as wasmtime-wasi waits forever).
            deadline: Instant::now().checked_add(duration),
        };
        let sleep = table.push(sleep)?;
        subscribe(table, sleep)
    }
}

/// The `pollable` behind the lock component's `subscribe-duration` and `subscribe-instant`.
struct Sleep {
    sleeper: Arc<Sleeper>,
    /// Whether a release ends it early.
    wakeable: bool,
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
        if !self.wakeable
            && let Some(deadline) = self.deadline
        {
            sleeper.sleep_alone(deadline);
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

/// Ends the waits of one lock service from any thread (a signal handler's thread, say): its
/// current and later `acquire` calls return `busy` at their next look, having left the queue.
/// Cancelling is for good: a cancelled service no longer waits.
#[derive(Clone)]
pub struct WaitCanceller(Arc<Sleeper>);

impl WaitCanceller {
    pub(crate) fn new(sleeper: &Arc<Sleeper>) -> Self {
        WaitCanceller(Arc::clone(sleeper))
    }

    /// Cancel: end the current sleep, and make every later one return at once.
    pub fn cancel(&self) {
        let sleeper = &self.0;
        sleeper.cancelled.store(true, Ordering::SeqCst);
        // Under each sleep's mutex, so that a sleep about to wait cannot miss it.
        drop(
            sleeper
                .alone
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        sleeper.alone.1.notify_all();
        drop(sleeper.dir.lock());
        sleeper.dir.changed.notify_all();
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
        let sleeper = Sleeper::new(&std::env::temp_dir());
        let mut cx = Context::from_waker(Waker::noop());
        let at = |deadline| Sleep {
            sleeper: Arc::clone(&sleeper),
            wakeable: true,
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
        let waiter = Sleeper::new(&dir);
        waiter.observe();
        // Another spelling of the same directory; before the sleep or during it, either way
        // the wake-up ends it (without it, this sleep would never end).
        let releaser = Sleeper::new(&dir.join("."));
        let wake = std::thread::spawn(move || releaser.wake_all());
        block(&mut Sleep {
            sleeper: waiter,
            wakeable: true,
            deadline: None,
        });
        wake.join().unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_cancel_ends_a_long_sleep_and_moves_the_clock_past_any_patience() {
        let sleeper = Sleeper::new(&std::env::temp_dir());
        let cancel = WaitCanceller::new(&sleeper);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            cancel.cancel();
        });
        // Without the cancel, this would sleep for an hour.
        block(&mut Sleep {
            sleeper: Arc::clone(&sleeper),
            wakeable: false,
            deadline: Some(Instant::now() + Duration::from_secs(3600)),
        });
        canceller.join().unwrap();
        let skipped_ms = sleeper.skipped() / 1_000_000;
        assert!(skipped_ms > MAX_CANCELLABLE_PATIENCE_MS, "{skipped_ms}");
        // And later sleeps do not sleep at all.
        block(&mut Sleep {
            sleeper: Arc::clone(&sleeper),
            wakeable: true,
            deadline: None,
        });
    }

    #[test]
    fn a_long_sleep_is_not_cut_short_by_a_release() {
        let dir = std::env::temp_dir().join(format!("lockbydir-nowake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let waiter = Sleeper::new(&dir);
        waiter.observe();
        let releaser = Sleeper::new(&dir);
        releaser.wake_all();
        let start = Instant::now();
        let length = WAKEABLE + Duration::from_millis(20);
        block(&mut Sleep {
            sleeper: waiter,
            wakeable: false,
            deadline: Some(start + length),
        });
        // Woken by the release, it would have returned at once.
        assert!(start.elapsed() >= length);
        std::fs::remove_dir(&dir).unwrap();
    }
}
