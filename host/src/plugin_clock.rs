//! Plugins' sleeps to the OS timer's precision, not tokio's whole milliseconds.
//!
//! wasmtime-wasi implements `wasi:clocks/monotonic-clock.subscribe-duration` (what
//! `std::thread::sleep` in a plugin comes down to) as a tokio timer, and tokio's timers tick
//! in whole milliseconds, rounding every deadline up to the next tick: a plugin that sleeps
//! 5 ms sleeps about 6 ms, a plugin that holds a lock "for 5 ms" holds it a fifth longer than
//! it asked. [`shadow_monotonic_clock`] replaces the two `subscribe-*` functions for plugins
//! with pollables that one timer thread per process wakes at their deadline, by the OS timer
//! (tens of µs late; the thread asks Linux for no timer slack). `now` and `resolution` stay
//! wasmtime-wasi's.
//!
//! A plugin that runs on a thread of its own (a WASI 0.2 command: [`on_own_thread`]) ends the
//! last [`OWN_THREAD_FINISH`] of a sleep with a sleep of that thread itself: the timer thread
//! wakes it that much early, and its poll sleeps the rest. So the end of the sleep is one
//! wake-up by the kernel's timer, not the timer thread's wake-up followed by the plugin
//! thread's: with 200 plugins taking turns to hold a lock across a 5 ms sleep, the median
//! hold was 5.19-5.20 ms before and 5.03 ms after (`lockbydir bench --quick --only hammer`,
//! docs/performance.md). Otherwise the pollable never blocks its caller:
//! a plugin's `poll` over several pollables (a timer and a stream, say) returns as soon as any
//! of them is ready, except within the last [`OWN_THREAD_FINISH`] of a timer, where `poll`,
//! `block` and `ready` on that timer return at its deadline, ready (wasmtime-wasi's own timers
//! are up to a millisecond late anyway). WASI 0.3 plugins, whose tasks share a thread, keep
//! the timer thread alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// The deadlines waited for, with who to wake at each; the timer thread sleeps until the
/// earliest.
struct Timers {
    waiting: Mutex<Vec<(Instant, Waker)>>,
    /// Rung when a deadline earlier than all others is added.
    earlier: Condvar,
}

/// The process's timers, and their thread (started at the first use).
static TIMERS: LazyLock<&'static Timers> = LazyLock::new(|| {
    let timers: &'static Timers = Box::leak(Box::new(Timers {
        waiting: Mutex::new(Vec::new()),
        earlier: Condvar::new(),
    }));
    std::thread::Builder::new()
        .name("lockbydir-timers".into())
        .spawn(move || {
            // Its timed waits end at their deadline, not up to the default 50 µs of slack
            // later (Linux's timer slack; failing changes nothing but that).
            #[cfg(target_os = "linux")]
            // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes this thread's
            // timer slack only.
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            }
            timers.run()
        })
        .expect("a thread for plugins' timers");
    timers
});

impl Timers {
    /// Wake `waker` at `deadline` (or a little after).
    fn wake_at(&self, deadline: Instant, waker: &Waker) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let first = waiting.iter().all(|(at, _)| deadline < *at);
        // The same pollable polled again before its deadline: one entry is enough.
        match waiting
            .iter_mut()
            .find(|(at, w)| *at == deadline && w.will_wake(waker))
        {
            Some(_) => {}
            None => waiting.push((deadline, waker.clone())),
        }
        drop(waiting);
        if first {
            self.earlier.notify_one();
        }
    }

    /// The timer thread: wake every waker whose deadline has come, sleep until the next.
    fn run(&self) -> ! {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            waiting.retain(|(at, waker)| {
                let keep = *at > now;
                if !keep {
                    due.push(waker.clone());
                }
                keep
            });
            if !due.is_empty() {
                drop(waiting);
                due.into_iter().for_each(Waker::wake);
                waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let next = waiting.iter().map(|(at, _)| *at).min();
            waiting = match next {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    self.earlier
                        .wait_timeout(waiting, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .earlier
                    .wait(waiting)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// Ready at `deadline` (never, if `None`).
struct Timer {
    deadline: Option<Instant>,
}

/// The future behind [`Timer`]'s readiness: ready once its deadline has passed, asking the
/// timer thread to wake it until then.
struct Due(Option<Instant>);

/// How much of the end of a sleep a plugin on its own thread sleeps itself (see the module's
/// documentation).
pub(crate) const OWN_THREAD_FINISH: Duration = Duration::from_millis(1);

thread_local! {
    /// Whether this thread runs one plugin and nothing else (see [`on_own_thread`]).
    static OWN_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f`, a plugin's run on this thread that nothing else shares, with its timers finishing
/// their sleeps on this thread (see the module's documentation); without timer slack for this
/// thread, as the timer thread has.
pub(crate) fn on_own_thread<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes this thread's timer
    // slack only.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            OWN_THREAD.with(|own| own.set(self.0));
        }
    }
    let _reset = Reset(OWN_THREAD.with(|own| own.replace(true)));
    f()
}

impl Future for Due {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.0 else {
            // As wasmtime-wasi's: a deadline too far away to represent never comes.
            return Poll::Pending;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Poll::Ready(());
        }
        match OWN_THREAD.with(|own| own.get()) {
            true if left <= OWN_THREAD_FINISH => {
                std::thread::sleep(left);
                Poll::Ready(())
            }
            true => {
                TIMERS.wake_at(deadline - OWN_THREAD_FINISH, cx.waker());
                Poll::Pending
            }
            false => {
                TIMERS.wake_at(deadline, cx.waker());
                Poll::Pending
            }
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        Due(self.deadline).await
    }
}

/// What the shadowing `wasi:clocks/monotonic-clock` works on: wasmtime-wasi's clocks and the
/// Store's resource table.
pub(crate) struct PreciseClock<'a>(pub(crate) WasiClocksCtxView<'a>);

struct HasPreciseClock;

impl HasData for HasPreciseClock {
    type Data<'a> = PreciseClock<'a>;
}

impl PreciseClock<'_> {
    fn timer(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let timer = self.0.table.push(Timer {
            deadline: Instant::now().checked_add(duration),
        })?;
        subscribe(self.0.table, timer)
    }
}

impl monotonic_clock::Host for PreciseClock<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        monotonic_clock::Host::now(&mut self.0)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        monotonic_clock::Host::resolution(&mut self.0)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(&mut self.0)?;
        self.timer(Duration::from_nanos(when.saturating_sub(now)))
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.timer(Duration::from_nanos(duration))
    }
}

/// Replace `wasi:clocks/monotonic-clock`, already in `linker` from wasmtime-wasi, with the
/// precise one. Call after `wasmtime_wasi::p2::add_to_linker_sync`. Defined under the name
/// wasmtime-wasi used, so every semver-compatible 0.2.x import resolves to it.
pub(crate) fn shadow_monotonic_clock<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> PreciseClock<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = monotonic_clock::add_to_linker::<T, HasPreciseClock>(linker, view);
    linker.allow_shadowing(false);
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Poll `future` on this thread, parking between polls, until it is ready.
    fn block_on(future: impl Future<Output = ()>) {
        let mut future = std::pin::pin!(future);
        let thread = std::thread::current();
        let waker = Waker::from(std::sync::Arc::new(Unpark(thread)));
        let mut cx = Context::from_waker(&waker);
        while future.as_mut().poll(&mut cx).is_pending() {
            std::thread::park();
        }
    }

    struct Unpark(std::thread::Thread);

    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }

    #[test]
    fn timers_end_at_their_deadlines_never_before_and_in_any_order() {
        let start = Instant::now();
        let lengths = [30u64, 5, 20, 0, 10];
        let threads: Vec<_> = lengths
            .iter()
            .map(|&ms| {
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_millis(ms);
                    block_on(Due(Some(deadline)));
                    assert!(Instant::now() >= deadline);
                    ms
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn on_a_plugin_s_own_thread_a_timer_s_last_stretch_is_slept_by_that_thread() {
        let mut cx = Context::from_waker(Waker::noop());
        let soon = || Instant::now() + OWN_THREAD_FINISH / 2;
        // Elsewhere: pending, for the timer thread to wake.
        assert!(Pin::new(&mut Due(Some(soon()))).poll(&mut cx).is_pending());
        on_own_thread(|| {
            let deadline = soon();
            assert!(Pin::new(&mut Due(Some(deadline))).poll(&mut cx).is_ready());
            assert!(Instant::now() >= deadline);
            // Further away: pending, and woken before the deadline, to sleep the rest.
            let later = Instant::now() + 20 * OWN_THREAD_FINISH;
            assert!(Pin::new(&mut Due(Some(later))).poll(&mut cx).is_pending());
            // Nested use keeps the outer setting.
            on_own_thread(|| {});
            assert!(OWN_THREAD.with(|own| own.get()));
        });
        assert!(!OWN_THREAD.with(|own| own.get()));
        // And the blocking `block_on` of a sleep on its own thread ends after the deadline.
        on_own_thread(|| {
            let deadline = Instant::now() + 3 * OWN_THREAD_FINISH;
            block_on(Due(Some(deadline)));
            assert!(Instant::now() >= deadline);
        });
    }

    #[test]
    fn a_timer_is_pending_until_its_deadline_and_a_far_one_never_ends() {
        let mut cx = Context::from_waker(Waker::noop());
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(Pin::new(&mut Due(Some(later))).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut Due(None)).poll(&mut cx).is_pending());
        assert!(
            Pin::new(&mut Due(Some(Instant::now())))
                .poll(&mut cx)
                .is_ready()
        );
    }
}
