//! When a waiter looks at the lock again, and how long it sleeps meanwhile.
//!
//! Each look is one attempt (see `transitions.rs`); between two looks a waiter sleeps, in one
//! of two ways, chosen by [`Env::wakes_on_change`]:
//!
//! - **Woken by changes** (a host with change notification, such as the lockbydir host with
//!   inotify): each waiter sleeps on the one name whose change it waits for, as in
//!   ZooKeeper's lock recipe. The first in line sleeps on the holder's state entry; every
//!   other waiter sleeps on the ticket of the one just before it. So a release wakes the
//!   first in line and nobody else, and it renames the free entry the release left without
//!   reading the lockdir first; the line moves up one by one as each waiter takes its turn
//!   and withdraws its ticket (the one behind learns from the state that it is now first),
//!   or gives up (a dropped handle withdraws its ticket at once). A wake-up is only a hint: every sleep is bounded (the takeover moment, our
//!   ticket's renewal, patience's end, the predecessor's ticket ceasing to count), and a
//!   look follows it, whatever ended it.
//! - **Polling** (any other host): the first two in line look every [`HEAD_POLL_US`] whether
//!   the state entry is still the one they saw (one `stat`); the others sleep about half the
//!   time they expect the waiters ahead of them to take (see [`Pace`]).

use crate::entry::{Entry, Holder};
use crate::env::Env;
use crate::error::Error;
use crate::fs::Fs;

use super::transitions::{Attempt, Wait};
use super::{BUSY_LOOK_FRESH_US, Fairness, TICKET_LIFETIME_MS};
use super::{Lock, Outcome, Step};

/// How often the first two waiters in line look whether the state changed (µs). They look
/// with one `stat` of the state entry's exact name.
pub const HEAD_POLL_US: u64 = 200;

impl<F: Fs, E: Env> Lock<F, E> {
    /// One step of the waiting loop of [`Lock::acquire`]: look (one attempt), take a ticket
    /// or renew it, and say how long to sleep until the next look is worth making; or the
    /// outcome, once the lock is ours or patience ended. Never sleeps itself.
    pub(super) fn wait_step(&mut self) -> Result<Step, Error> {
        let first_step = self.waiting.is_none();
        let mut waiting = self.waiting.take().unwrap_or_else(|| Waiting {
            start_ms: self.env.monotonic_ms(),
            backoff: self.options.min_poll_ms,
            pace: Pace::default(),
            head_poll: None,
        });
        // Polling near the head of the line: one `stat` per step until the state entry we
        // saw is gone or the poll's time is up; only then a full look.
        if let Some(poll) = waiting.head_poll.take() {
            // Any error: let the next attempt find out what is going on.
            if self.fs.exists(&poll.path).unwrap_or(false) && self.env.monotonic_ms() < poll.end_ms
            {
                waiting.head_poll = Some(poll);
                self.waiting = Some(waiting);
                return Ok(Step::Sleep {
                    until_changed: None,
                    us: HEAD_POLL_US,
                });
            }
        }
        // The first step of a wait right after a `try_acquire` that found the lock busy:
        // that was the look.
        let busy_look = self.busy_look.take().filter(|(_, at)| {
            first_step && self.env.monotonic_us().saturating_sub(*at) <= BUSY_LOOK_FRESH_US
        });
        let attempt = match busy_look {
            Some((wait, _)) => Attempt::Wait(wait),
            None => self.attempt_settled()?,
        };
        let mut wait = match attempt {
            Attempt::Acquired(grant) => return Ok(Step::Done(Outcome::Acquired(grant))),
            Attempt::Wait(wait) => wait,
            Attempt::LostRace(seen) => Wait {
                holder: seen,
                ahead: 0,
                state: None,
                last_arrival: None,
                predecessor: None,
            },
        };
        let waited = self.env.monotonic_ms().saturating_sub(waiting.start_ms);
        let patience_left = self.options.patience_ms.saturating_sub(waited);
        if patience_left == 0 {
            return Ok(Step::Done(Outcome::Busy(wait.holder)));
        }
        // A ticket just made comes with our place as read after it: the look before it can
        // have missed someone who joined at the same moment.
        if let Some(queue) = self.join_queue(wait.last_arrival)? {
            wait.ahead = queue.ahead;
            wait.predecessor = queue.predecessor;
        }
        if let Some(holder) = &wait.holder {
            waiting.pace.saw(holder);
        }
        let now = self.env.now_ms();
        // When the holder's entry may be taken over (by our clock): our look after that
        // must not be late.
        let until_takeover = wait.holder.as_ref().map(|h| {
            h.deadline_ms
                .saturating_add(self.options.max_clock_skew_ms)
                .saturating_add(1)
                .saturating_sub(now)
        });
        let renew_in = self
            .ticket
            .map_or(u64::MAX, |t| t.expires_ms.saturating_sub(now) / 2);
        let limit_ms = patience_left.min(renew_in).max(1);
        // Whether to mark the holder's entry (waiters queued): any waiter in
        // first-come-first-served; under bounded fairness the first in line (the holder
        // then decides when its release goes to the line).
        let may_mark = self.ticket.is_some()
            && match self.options.fairness {
                Fairness::Fifo => true,
                Fairness::Bounded => wait.ahead == 0,
            };
        let next = Next {
            wait: &wait,
            until_takeover,
            limit_ms,
            may_mark,
        };
        let sleep = match self.env.wakes_on_change() {
            true => self.sleep_until_woken(&next, &mut waiting.backoff),
            false => self.sleep_polling(&next, &mut waiting),
        };
        self.waiting = Some(waiting);
        Ok(sleep)
    }

    /// With change notification: sleep on the one name whose change we wait for, so that
    /// only what we wait for wakes us (a release wakes the first in line, not everyone).
    ///
    /// - First in line, the lock held within its deadline: its state entry, which goes when
    ///   the holder releases, refreshes, is marked or is taken over; until the takeover moment
    ///   by our clock at the latest.
    /// - Behind others (the lock held, or free with others before us): the ticket of the one
    ///   just before us, which goes when its owner takes the lock (it withdraws its ticket
    ///   right after its rename), gives up (a dropped handle withdraws its ticket) or renews
    ///   it (a new name to watch); until that ticket stops counting at the latest (its owner
    ///   died). Not the state entry: a release is not our turn, and a waiter ahead that
    ///   gives up changes nothing there. When it goes, the next look reads the queue in full
    ///   and finds either our turn or a new name to watch.
    /// - Otherwise (every race lost, or the lock past its deadline by our clock but not yet
    ///   by the filesystem's): the backoff of the polling pace, ended early if the state entry
    ///   we saw changes. Nothing here waits for a rename: the race was already lost to a
    ///   change, and the filesystem's clock only needs time.
    ///
    /// Every sleep also ends by our ticket's renewal time and patience's end, and safety
    /// never depends on a wake-up: it is followed by a look, whatever ended it.
    fn sleep_until_woken(&mut self, next: &Next, backoff: &mut u64) -> Step {
        let wait = next.wait;
        let until = next.until_takeover.filter(|&u| u > 0);
        // Tell the holder someone queued, as when polling (not past its deadline: the mark
        // would touch the lockdir's mtime and so delay a takeover).
        let holder = match (&wait.holder, until) {
            (Some(h), Some(_)) if !h.waiters && next.may_mark => Some(self.mark(h)),
            (holder, _) => holder.clone(),
        };
        match (holder, until, wait.predecessor) {
            (Some(holder), Some(until), _) if wait.ahead == 0 => {
                // Its release leaves `free.k` (`free+.k` if marked): the next look renames
                // that straight away.
                self.after_release = Some(Entry::Free {
                    fence: holder.fence,
                    waiters: holder.waiters,
                });
                let path = self.state_path(&Entry::Held(holder));
                sleep_on(path, until.min(next.limit_ms))
            }
            (_, _, Some(predecessor)) if wait.ahead > 0 => {
                let counts_ms = predecessor
                    .counts_until_ms
                    .saturating_sub(self.env.monotonic_ms())
                    .max(1);
                // Whatever wakes us, the one before us may be gone: the next look tells from the
                // state whether it was served (then we are first), or reads the queue in full.
                self.watched_predecessor = Some(predecessor.ticket);
                sleep_on(
                    self.ticket_path(&predecessor.ticket),
                    counts_ms.min(next.limit_ms),
                )
            }
            _ => {
                let mut pause = self.back_off(backoff).min(next.limit_ms);
                if let Some(until) = until {
                    pause = pause.min(until);
                }
                match &wait.state {
                    Some(state) => sleep_on(self.state_path(state), pause),
                    None => sleep_ms(pause),
                }
            }
        }
    }

    /// The path of state entry `state`.
    fn state_path(&self, state: &Entry) -> String {
        format!("{}/{}", self.lockdir, state.encode())
    }

    /// Without change notification (the polling fallback): look as often as the place in
    /// line calls for.
    fn sleep_polling(&mut self, next: &Next, waiting: &mut Waiting) -> Step {
        let (wait, until_takeover, limit_ms) = (next.wait, next.until_takeover, next.limit_ms);
        match (&wait.holder, until_takeover) {
            // First or second in line: watch the state entry closely (one `stat` per
            // look), so that whoever is next is awake when the lock changes hands.
            (Some(holder), Some(until)) if wait.ahead <= 1 && until > 0 => {
                let holder = match !holder.waiters && next.may_mark {
                    true => self.mark(holder),
                    false => holder.clone(),
                };
                self.poll_until_gone(waiting, &Entry::Held(holder), until.min(limit_ms))
            }
            (None, _) if wait.ahead == 1 && wait.state.is_some() => {
                // Free, and the one before us is about to take it (or its ticket is about
                // to expire: look again within max-poll).
                let state = wait.state.as_ref().expect("checked");
                self.poll_until_gone(waiting, state, limit_ms.min(self.options.max_poll_ms))
            }
            _ if wait.ahead > 0 => {
                // Not an entry past its deadline: the mark would touch the lockdir's mtime
                // and so delay a takeover.
                if let Some(holder) = wait.holder.as_ref().filter(|h| !h.waiters)
                    && until_takeover.is_some_and(|u| u > 0)
                    && next.may_mark
                {
                    self.mark(holder);
                }
                // Far back in a long line, look less often than max-poll: every look lists
                // the lockdir at least, and a full one the whole queue.
                let cap_us = self
                    .options
                    .max_poll_ms
                    .saturating_mul(1 + wait.ahead as u64 / 8)
                    .min(TICKET_LIFETIME_MS / 4)
                    .saturating_mul(1000);
                // Until the pace is known: the backoff, but no more than `min_poll_ms`
                // per waiter ahead (the line may move fast).
                let pause_us = waiting
                    .pace
                    .pause_us(wait.ahead, cap_us)
                    .unwrap_or_else(|| {
                        let by_place = self.options.min_poll_ms.saturating_mul(wait.ahead as u64);
                        self.back_off(&mut waiting.backoff)
                            .min(by_place)
                            .max(1)
                            .saturating_mul(1000)
                    });
                Step::Sleep {
                    until_changed: None,
                    us: pause_us.min(limit_ms.saturating_mul(1000)),
                }
            }
            _ => {
                // Free but lost every race, or expired by our clock but not by the
                // filesystem's: back off.
                let mut pause = self.back_off(&mut waiting.backoff).min(limit_ms);
                if let Some(until) = until_takeover.filter(|&u| u > 0) {
                    pause = pause.min(until);
                }
                sleep_ms(pause)
            }
        }
    }

    /// The next pause of the backoff (ms, at least 1): `backoff` jittered down by up to half,
    /// which then doubles up to `max_poll_ms`.
    pub(super) fn back_off(&self, backoff: &mut u64) -> u64 {
        let jittered = *backoff / 2 + self.env.random_u64() % (*backoff / 2 + 1);
        *backoff = backoff.saturating_mul(2).min(self.options.max_poll_ms);
        jittered.max(1)
    }

    /// Near the head of the queue: look every [`HEAD_POLL_US`] whether the state entry is
    /// still `state`, for at most `limit_ms` (the next steps do, one `stat` each).
    fn poll_until_gone(&self, waiting: &mut Waiting, state: &Entry, limit_ms: u64) -> Step {
        waiting.head_poll = Some(HeadPoll {
            path: self.state_path(state),
            end_ms: self.env.monotonic_ms().saturating_add(limit_ms),
        });
        Step::Sleep {
            until_changed: None,
            us: HEAD_POLL_US,
        }
    }
}

/// Sleep until `path` (in the lock directory) is renamed or removed, if the environment can
/// tell, for at most `limit_ms`.
fn sleep_on(path: String, limit_ms: u64) -> Step {
    Step::Sleep {
        until_changed: Some(path),
        us: limit_ms.max(1).saturating_mul(1000),
    }
}

/// A plain sleep of `ms`.
fn sleep_ms(ms: u64) -> Step {
    Step::Sleep {
        until_changed: None,
        us: ms.saturating_mul(1000),
    }
}

/// A wait in progress: what [`Lock::acquire_step`] keeps between steps.
pub(super) struct Waiting {
    /// When the wait began (monotonic ms): patience counts from here.
    start_ms: u64,
    /// The next pause of the backoff (ms).
    backoff: u64,
    /// How fast the lock changes hands, as this wait saw it.
    pace: Pace,
    /// Polling the state entry near the head of the line (without change notification).
    head_poll: Option<HeadPoll>,
}

/// A state entry polled with one `stat` per step until it is gone or `end_ms` passes.
struct HeadPoll {
    path: String,
    /// Monotonic ms.
    end_ms: u64,
}

/// What one look found, and how long the sleep after it may last.
struct Next<'a> {
    wait: &'a Wait,
    /// How long until the holder may be taken over by our clock (ms), if it is held.
    until_takeover: Option<u64>,
    /// The longest sleep: until our ticket's renewal time or patience's end (ms).
    limit_ms: u64,
    /// Whether we may mark the holder's entry now.
    may_mark: bool,
}

/// How fast the lock changes hands, as one waiter sees it: from the holders it saw, their
/// fences and when they took the lock (their own `since`), so that neither its own sleeps nor
/// a long hold before it started waiting skew the estimate.
#[derive(Default)]
pub(super) struct Pace {
    /// The first and the latest holder seen: (fence, since).
    pub(super) first: Option<(u64, u64)>,
    pub(super) last: Option<(u64, u64)>,
}

impl Pace {
    /// Seen `holder` holding the lock.
    pub(super) fn saw(&mut self, holder: &Holder) {
        let seen = (holder.fence, holder.since_ms);
        self.first.get_or_insert(seen);
        self.last = Some(seen);
    }

    /// About half the time the `ahead` waiters before us are expected to take (µs), at least
    /// [`HEAD_POLL_US`], at most `cap_us`. `None` until two holders were seen.
    pub(super) fn pause_us(&self, ahead: usize, cap_us: u64) -> Option<u64> {
        let ((f0, t0), (f1, t1)) = (self.first?, self.last?);
        let handovers = f1.checked_sub(f0).filter(|&n| n > 0)?;
        let per_handover_us = t1.saturating_sub(t0).saturating_mul(1000) / handovers;
        Some(
            (per_handover_us.saturating_mul(ahead as u64) / 2)
                .min(cap_us)
                .max(HEAD_POLL_US),
        )
    }
}
