//! When a waiter looks at the lock again, and how long it sleeps meanwhile.

use crate::entry::{Entry, Holder};
use crate::env::Env;
use crate::error::Error;
use crate::fs::Fs;

use super::TICKET_LIFETIME_MS;
use super::transitions::{Attempt, Wait};
use super::{Lock, Outcome};

/// How often the first two waiters in line look whether the state changed (µs). They look
/// with one `stat` of the state entry's exact name.
pub const HEAD_POLL_US: u64 = 200;

impl<F: Fs, E: Env> Lock<F, E> {
    pub(super) fn wait_in_line(&mut self) -> Result<Outcome, Error> {
        let start = self.env.monotonic_ms();
        let mut backoff = self.options.min_poll_ms;
        let mut pace = Pace::default();
        loop {
            let wait = match self.attempt_settled()? {
                Attempt::Acquired(grant) => return Ok(Outcome::Acquired(grant)),
                Attempt::Wait(wait) => wait,
                Attempt::LostRace(seen) => Wait {
                    holder: seen,
                    ahead: 0,
                    state: None,
                    last_arrival: None,
                },
            };
            let waited = self.env.monotonic_ms().saturating_sub(start);
            let patience_left = self.options.patience_ms.saturating_sub(waited);
            if patience_left == 0 {
                return Ok(Outcome::Busy(wait.holder));
            }
            self.join_queue(wait.last_arrival)?;
            if let Some(holder) = &wait.holder {
                pace.saw(holder);
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
            match (&wait.holder, until_takeover) {
                // First or second in line: watch the state entry closely (one `stat` per
                // look), so that whoever is next is awake when the lock changes hands.
                (Some(holder), Some(until)) if wait.ahead <= 1 && until > 0 => {
                    let holder = match !holder.waiters && self.ticket.is_some() {
                        true => self.mark(holder),
                        false => holder.clone(),
                    };
                    self.watch(&Entry::Held(holder), until.min(limit_ms));
                }
                (None, _) if wait.ahead == 1 && wait.state.is_some() => {
                    // Free, and the one before us is about to take it (or its ticket is about
                    // to expire: look again within max-poll).
                    let state = wait.state.as_ref().expect("checked");
                    self.watch(state, limit_ms.min(self.options.max_poll_ms));
                }
                _ if wait.ahead > 0 => {
                    // Not an entry past its deadline: the mark would touch the lockdir's mtime
                    // and so delay a takeover.
                    if let Some(holder) = wait.holder.as_ref().filter(|h| !h.waiters)
                        && until_takeover.is_some_and(|u| u > 0)
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
                    let pause_us = pace.pause_us(wait.ahead, cap_us).unwrap_or_else(|| {
                        let by_place = self.options.min_poll_ms.saturating_mul(wait.ahead as u64);
                        self.back_off(&mut backoff)
                            .min(by_place)
                            .max(1)
                            .saturating_mul(1000)
                    });
                    self.env
                        .sleep_us(pause_us.min(limit_ms.saturating_mul(1000)));
                }
                _ => {
                    // Free but lost every race, or expired by our clock but not by the
                    // filesystem's: back off.
                    let mut pause = self.back_off(&mut backoff).min(limit_ms);
                    if let Some(until) = until_takeover.filter(|&u| u > 0) {
                        pause = pause.min(until);
                    }
                    self.env.sleep_ms(pause);
                }
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
    /// still `state`, for at most `limit_ms`.
    pub(super) fn watch(&self, state: &Entry, limit_ms: u64) {
        let path = format!("{}/{}", self.lockdir, state.encode());
        let end = self.env.monotonic_ms().saturating_add(limit_ms);
        loop {
            self.env.sleep_us(HEAD_POLL_US);
            // Any error: let the next attempt find out what is going on.
            if !self.fs.exists(&path).unwrap_or(false) || self.env.monotonic_ms() >= end {
                return;
            }
        }
    }
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
