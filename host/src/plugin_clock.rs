//! Plugins' sleeps to the OS timer's precision, not tokio's whole milliseconds.
//!
//! wasmtime-wasi implements `wasi:clocks/monotonic-clock.subscribe-duration` (what
//! `std::thread::sleep` in a plugin comes down to) as a tokio timer, and tokio's timers tick
//! in whole milliseconds, rounding every deadline up to the next tick: a plugin that sleeps
//! 5 ms sleeps about 6 ms, a plugin that holds a lock "for 5 ms" holds it a fifth longer than
//! it asked. [`shadow_monotonic_clock`] replaces the two `subscribe-*` functions for plugins
//! with pollables that one timer thread per process wakes at their deadline, by the OS timer
//! (tens of µs late; the thread asks Linux for no timer slack). The pollable never blocks its caller: while it waits, a plugin's
//! `poll` over several pollables (a timer and a stream, say) still returns as soon as any of
//! them is ready. `now` and `resolution` stay wasmtime-wasi's.

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

impl Future for Due {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.0 {
            Some(deadline) if Instant::now() >= deadline => Poll::Ready(()),
            Some(deadline) => {
                TIMERS.wake_at(deadline, cx.waker());
                Poll::Pending
            }
            // As wasmtime-wasi's: a deadline too far away to represent never comes.
            None => Poll::Pending,
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
