//! One named lock as used by one holder: acquire, refresh, release, inspect.
//!
//! # The protocol
//!
//! Lock `N` is the directory `N.lockdir`. Once it exists it always contains exactly one
//! *state entry* (see [`crate::entry`]): `free.<fence>` or
//! `held.<fence>.<since>.<deadline>.<timeout>.<token>.<holder>`. Every change of state is a
//! single `rename` of that entry to a new name inside the same lockdir:
//!
//! | step            | rename                                                    |
//! |-----------------|-----------------------------------------------------------|
//! | acquire (free)  | `free.k` → `held.k+1.<now>.<now+timeout>.…<new token>`     |
//! | take over       | `held.k.…<deadline d>…` (seen with now > d + skew) → `held.k+1.…<new token>` |
//! | refresh         | `held.k.….<d>.…` → `held.k.….<now+timeout>.…` (same token) |
//! | release         | `held.k.…<token>…` → `free.k`                              |
//!
//! The lockdir itself is created once, already containing `free.0`: the entry is made in a
//! private staging directory which is then renamed to `N.lockdir`. That rename fails when
//! `N.lockdir` exists and is not empty, and a lockdir is never empty, so two creators cannot
//! both succeed, and no acquirer ever sees a lockdir without its state.
//!
//! ## Why two holders cannot both get in (the seed's TODO 1)
//!
//! A rename succeeds only if its source name still exists, and exactly one of several
//! concurrent renames of the same source succeeds. So each transition is a compare-and-swap
//! on the *whole* state, including the deadline: two waiters that saw the same stale entry
//! both try to rename that exact name; one wins, the other gets `NotFound`. A holder that
//! refreshed in the meantime changed the name, so a waiter acting on the old, stale name fails.
//! There is no delete-then-recreate step, hence no window where a late breaker removes a fresh
//! lock, and no ABA: the token is fresh per acquisition and the fence grows with every
//! acquisition, so a name never comes back.
//!
//! Release renames the holder's own exact entry to `free.k`. If the lock was taken over, that
//! name is gone and release changes nothing (it reports [`Error::Compromised`]). Refresh is
//! the same compare-and-swap, so a holder learns it lost the lock at its next refresh or
//! release.
//!
//! ## Time (the seed's TODO 2)
//!
//! The holder writes its own timeout and deadline into the entry. A waiter takes the lock over
//! only when its own clock is past that deadline plus `max_clock_skew_ms`; until then it sleeps
//! until the deadline or its own backoff, whichever is first. A holder counts itself valid
//! only until its deadline by its own clock. With clocks that differ by at most the skew, a
//! holder's belief and a takeover never overlap in time. A holder that is paused past its
//! deadline (a stop, a swap storm) can lose the lock without knowing until its next call:
//! that is what the fencing token is for.
//!
//! ## Fairness: the queue
//!
//! A waiter that finds the lock busy takes a ticket, the directory
//! `N.queue/wait.<arrival>.<token>.<expires>` (see [`Ticket`]), and keeps renewing it while it
//! waits. It also marks the held entry (`held.…` → `held+.…`, a rename of the exact name), and
//! a marked entry is released as `free+.k`. A marked state means "look at the queue": a free
//! (or expired) marked lock may be taken only by the waiter with the oldest live ticket. So a
//! holder that releases while others wait and asks again queues behind them instead of taking
//! the lock straight back. The one who takes a marked lock marks its own entry at once if
//! live tickets remain behind it (or may: a waiter that was first in line at its last full
//! look takes the lock without reading the queue again, and marks it). The mark changes the
//! holder's entry name, so a holder whose refresh or release rename fails looks again and, if
//! the state is its own acquisition marked, renames from the marked name.
//!
//! Tickets and marks only decide *who tries*; who *gets* the lock is still decided by the
//! rename above, so the queue cannot break mutual exclusion, only delay: a ticket whose owner
//! crashed counts until it expires ([`TICKET_LIFETIME_MS`] after its last renewal, plus the
//! skew margin, and never longer than that after a waiter first saw it, by that waiter's own
//! clock, whatever expiry the ticket claims: see `Lock::queue`), and someone who arrives
//! between a waiter's ticket and its mark can get in first. Tickets are not in the lockdir, so they do not touch its mtime (the takeover rule
//! reads it); a waiter does not mark an entry that is past its deadline, for the same reason.
//!
//! An unmarked release remembers `free.k`, and the next acquire by the same handle first tries
//! to rename that exact name without listing (one rename per uncontended acquire). If someone
//! else changed the state meanwhile, the rename fails and the acquire looks as usual.
//!
//! ## Fencing tokens
//!
//! The fence is part of the entry: `free.k` → `held.k+1`, take over `held.k` → `held.k+1`,
//! release keeps `k`. Since the lockdir is never removed by the protocol, every acquisition's
//! fence is greater than every earlier one's, across processes and hosts.

use std::collections::BTreeMap;

use crate::entry::{Entry, Holder, Ticket};
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsError, FsErrorKind};
use crate::name::LockName;

/// How many times one attempt re-reads the state after losing a race before it reports the
/// lock as busy.
const RACE_RETRIES: usize = 16;

/// How many times a read that saw no state entry, or more than one (a rename was in flight
/// while the directory was listed), is repeated before the lockdir counts as broken.
const READ_RETRIES: usize = 8;

/// How long a waiter's ticket counts without being renewed (ms, its owner's clock). A waiter
/// renews it when less than half is left; the ticket of a waiter that crashed stops holding up
/// the queue this long (plus the skew margin) after its last renewal.
pub const TICKET_LIFETIME_MS: u64 = 2_000;

/// How often the first two waiters in line look whether the state changed (µs). They look
/// with one `stat` of the state entry's exact name.
pub const HEAD_POLL_US: u64 = 200;

/// Settings chosen by whoever opens a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How long a held lock stays valid without refresh (ms). Stored in the lockdir.
    pub timeout_ms: u64,
    /// How long [`Lock::acquire`] waits before giving up (ms). 0: one attempt.
    pub patience_ms: u64,
    /// Shortest pause between two looks at a busy lock (ms).
    pub min_poll_ms: u64,
    /// Longest pause between two looks at a busy lock (ms).
    pub max_poll_ms: u64,
    /// How far the clocks of all users of the lock directory may disagree (ms). A lock is
    /// taken over only this long after its deadline.
    pub max_clock_skew_ms: u64,
    /// Label telling others who holds the lock.
    pub holder: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 30_000,
            patience_ms: u64::MAX,
            min_poll_ms: 1,
            max_poll_ms: 50,
            max_clock_skew_ms: 0,
            holder: String::new(),
        }
    }
}

/// The longest timeout accepted: about ten years, far from any overflow.
pub const MAX_TIMEOUT_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

impl Options {
    /// Check that the options make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::InvalidOption(msg));
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "timeout must be between 1 ms and {MAX_TIMEOUT_MS} ms, not {} ms",
                self.timeout_ms
            ));
        }
        if self.min_poll_ms == 0 {
            return bad("min-poll must be at least 1 ms".into());
        }
        if self.min_poll_ms > self.max_poll_ms {
            return bad(format!(
                "min-poll ({} ms) must not exceed max-poll ({} ms)",
                self.min_poll_ms, self.max_poll_ms
            ));
        }
        if self.max_clock_skew_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "max-clock-skew must be at most {MAX_TIMEOUT_MS} ms, not {} ms",
                self.max_clock_skew_ms
            ));
        }
        Ok(())
    }
}

/// A lock's state at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockState {
    /// No lockdir (or an empty one): nobody ever took the lock.
    Absent,
    /// Free; the last fencing token handed out.
    Free(u64),
    /// Held, and not yet to be taken over: within its deadline, or past it but not yet by
    /// both takeover rules (see [`Lock::inspect`]).
    Held(Holder),
    /// Held, but past its deadline by both takeover rules: the next waiter takes it over.
    Expired(Holder),
}

/// A successful acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token.
    pub fence: u64,
    /// The deadline (ms since the epoch).
    pub deadline_ms: u64,
    /// The expired holder this acquisition took the lock from, if any.
    pub took_over: Option<Holder>,
}

/// How an acquisition attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The lock is now held by this handle.
    Acquired(Grant),
    /// The lock is busy (patience ran out); the holder seen last, if any.
    Busy(Option<Holder>),
}

/// How a release ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Released before the deadline.
    InTime,
    /// The deadline had passed, but nobody had taken the lock over, so nobody else held it
    /// meanwhile.
    Late,
}

/// One lock as used by one holder. Dropping a handle that holds the lock releases it.
pub struct Lock<F: Fs, E: Env> {
    fs: F,
    env: E,
    name: LockName,
    lockdir: String,
    queue_dir: String,
    options: Options,
    held: Option<Holder>,
    /// After this handle released an unmarked entry: the fence of the `free` entry it wrote,
    /// which its next acquire tries first without listing.
    known_free: Option<u64>,
    /// This handle's place in the queue while [`Lock::acquire`] waits.
    ticket: Option<Ticket>,
    /// Our place in the queue at the last full look: how many live tickets were ahead, and
    /// the fence then. Each acquisition since moves us up by one (at most), so far back in
    /// a long line a look at the state alone shows we are not next, without listing the queue.
    place: Option<Place>,
    /// The state entry this handle saw at its last look (while waiting).
    last_seen: Option<Entry>,
    /// Whether we removed our ticket's directory (right after our rename took the lock); if
    /// that grant was given back, it is made again with the same place.
    ticket_withdrawn: bool,
    /// When (monotonic ms) this handle first saw each ticket of the queue's last listing:
    /// a ticket stops counting [`TICKET_LIFETIME_MS`] plus the skew margin after that by our
    /// own clock, whatever expiry its name claims (see [`Lock::queue`]).
    tickets_seen: BTreeMap<Ticket, u64>,
}

impl<F: Fs, E: Env> Lock<F, E> {
    /// A handle on lock `name`; creates nothing yet.
    pub fn new(fs: F, env: E, name: &str, options: Options) -> Result<Self, Error> {
        let name = LockName::new(name)?;
        options.validate()?;
        Ok(Lock {
            fs,
            env,
            lockdir: name.lockdir(),
            queue_dir: name.queue_dir(),
            name,
            options,
            held: None,
            known_free: None,
            ticket: None,
            place: None,
            last_seen: None,
            ticket_withdrawn: false,
            tickets_seen: BTreeMap::new(),
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The options this handle was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What this handle believes it holds (not verified against the lock directory).
    pub fn holder(&self) -> Option<&Holder> {
        self.held.as_ref()
    }

    /// The fencing token this handle holds, by its own record.
    pub fn fence(&self) -> Option<u64> {
        self.held.as_ref().map(|h| h.fence)
    }

    /// The lock's state now. A held lock counts as [`LockState::Expired`] only once this
    /// handle could take it over: its clock is past the deadline plus its skew margin, and the
    /// filesystem's clock agrees (the takeover rule of the module documentation, "Time").
    /// Until then it is [`LockState::Held`], also past its deadline. If the filesystem's clock cannot be read (a lock directory this process may
    /// not write to, where no probe can be made), the own clock alone decides.
    pub fn inspect(&self) -> Result<LockState, Error> {
        for _ in 0..RACE_RETRIES {
            return Ok(match read_entry(&self.fs, &self.lockdir)? {
                Read::Unsettled => continue,
                Read::Missing => LockState::Absent,
                Read::Entry(Entry::Free { fence, .. }) => LockState::Free(fence),
                Read::Entry(Entry::Held(h)) => {
                    let by_own_clock = self.env.now_ms()
                        > h.deadline_ms.saturating_add(self.options.max_clock_skew_ms);
                    match by_own_clock && self.stale_by_filesystem_clock(&h).unwrap_or(true) {
                        true => LockState::Expired(h),
                        false => LockState::Held(h),
                    }
                }
            });
        }
        Err(Error::Unsettled {
            path: self.lockdir.clone(),
        })
    }

    /// One attempt that never waits. It respects the queue: a free lock that waiters have
    /// queued for is reported busy (with no holder) rather than taken ahead of them.
    pub fn try_acquire(&mut self) -> Result<Outcome, Error> {
        if self.held.is_some() {
            return Err(Error::AlreadyHeld);
        }
        Ok(match self.attempt_settled()? {
            Attempt::Acquired(grant) => Outcome::Acquired(grant),
            Attempt::Wait(wait) => Outcome::Busy(wait.holder),
            Attempt::LostRace(seen) => Outcome::Busy(seen),
        })
    }

    /// Attempts until one is not a lost race (or [`RACE_RETRIES`] were).
    fn attempt_settled(&mut self) -> Result<Attempt, Error> {
        let mut last_seen = None;
        for _ in 0..RACE_RETRIES {
            match self.attempt()? {
                // Someone else changed the state between our read and our rename: look again.
                Attempt::LostRace(seen) => last_seen = seen.or(last_seen),
                done => return Ok(done),
            }
        }
        Ok(Attempt::LostRace(last_seen))
    }

    /// Wait until the lock can be taken, then take it; give up after `patience_ms`.
    ///
    /// A waiter queues (see the module documentation, "Fairness") and sleeps between looks:
    /// first or second in line it looks every [`HEAD_POLL_US`] whether the state entry is
    /// gone (one `stat`), until the holder's deadline plus the skew margin; further back it
    /// sleeps about half the time it expects the waiters ahead of it to take, judged by the
    /// fences and acquisition times of the holders it saw (until it has seen two, a backoff
    /// that starts at `min_poll_ms` and doubles up to `max_poll_ms`, jittered, and no longer
    /// than `min_poll_ms` per waiter ahead). Far back in a long line it may sleep longer than
    /// `max_poll_ms` (up to `max_poll_ms` per 8 waiters ahead, at most a quarter of a ticket's
    /// lifetime), since each look lists the whole queue.
    ///
    /// When patience runs out, the handle keeps its ticket: called again soon (before the
    /// ticket expires, [`TICKET_LIFETIME_MS`] after its last renewal), `acquire` goes on
    /// waiting in the same place, so a caller that waits in slices (to stay responsive, as
    /// the Node and Python wrappers do) is served in its turn rather than queueing again at
    /// the back. Dropping the handle gives the ticket back at once; a handle that is neither
    /// dropped nor used holds up the line only until its ticket expires, like a crashed
    /// waiter. An acquire that got the lock or failed leaves no ticket.
    pub fn acquire(&mut self) -> Result<Outcome, Error> {
        if self.held.is_some() {
            return Err(Error::AlreadyHeld);
        }
        // A ticket kept from an earlier wait that expired meanwhile lost its place: others
        // may have removed it and served those behind it. Queue again, at the back.
        if self
            .ticket
            .is_some_and(|t| self.env.now_ms() > t.expires_ms)
        {
            self.leave_queue();
        }
        let outcome = self.wait_in_line();
        if !matches!(outcome, Ok(Outcome::Busy(_))) {
            self.leave_queue();
        }
        outcome
    }

    fn wait_in_line(&mut self) -> Result<Outcome, Error> {
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
    fn back_off(&self, backoff: &mut u64) -> u64 {
        let jittered = *backoff / 2 + self.env.random_u64() % (*backoff / 2 + 1);
        *backoff = backoff.saturating_mul(2).min(self.options.max_poll_ms);
        jittered.max(1)
    }

    /// Near the head of the queue: look every [`HEAD_POLL_US`] whether the state entry is
    /// still `state`, for at most `limit_ms`.
    fn watch(&self, state: &Entry, limit_ms: u64) {
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

    /// Tell the holder that someone queued: rename its exact entry to the marked name. If
    /// the state changed meanwhile the rename fails, which is fine: the next look sees why.
    /// Returns the holder as its entry now stands (as far as we know).
    ///
    /// The rename moves the lockdir's mtime, which the takeover rule (b) reads as the time the
    /// holder wrote its deadline: a mark just before the deadline would delay the takeover of
    /// a dead holder by up to a timeout. So the marked name records the lockdir's mtime as it
    /// was before the mark ([`Holder::written_ms`]), read *after* we saw the entry and
    /// *before* our rename. If the rename succeeds, the entry was in place at both moments,
    /// and names never come back, so it was in place all along: the mtime read is that of the
    /// rename that wrote it (or of something later, which only delays a takeover).
    fn mark(&self, holder: &Holder) -> Holder {
        let from = format!("{}/{}", self.lockdir, Entry::Held(holder.clone()).encode());
        let marked = Holder {
            waiters: true,
            // No reading (no timestamps, or the stat failed): a plain mark, which can only
            // delay a takeover.
            written_ms: self.fs.modified_ms(&self.lockdir).ok().flatten(),
            ..holder.clone()
        };
        let to = format!("{}/{}", self.lockdir, Entry::Held(marked.clone()).encode());
        match self.fs.rename(&from, &to) {
            Ok(()) => marked,
            Err(_) => holder.clone(),
        }
    }

    /// Take a ticket (behind every ticket we saw, the latest of which arrived at
    /// `last_arrival`), or renew ours when half its lifetime is gone.
    fn join_queue(&mut self, last_arrival: Option<u64>) -> Result<(), Error> {
        let now = self.env.now_ms();
        let expires_ms = now.saturating_add(TICKET_LIFETIME_MS);
        let renewed = match self.ticket {
            None => {
                let ticket = Ticket {
                    // Arrivals have millisecond resolution: without this, a holder that let go
                    // and queued again in the same millisecond could land before the waiter
                    // it just saw, by the toss of the tokens.
                    arrival_ms: now.max(last_arrival.map_or(0, |a| a.saturating_add(1))),
                    token: self.env.random_u64(),
                    expires_ms,
                };
                self.create_ticket(&self.ticket_path(&ticket))?;
                self.ticket = Some(ticket);
                return Ok(());
            }
            Some(t) if self.ticket_withdrawn => {
                let back = Ticket { expires_ms, ..t };
                self.create_ticket(&self.ticket_path(&back))?;
                self.ticket = Some(back);
                self.ticket_withdrawn = false;
                return Ok(());
            }
            Some(t) if t.expires_ms.saturating_sub(now) < TICKET_LIFETIME_MS / 2 => {
                Ticket { expires_ms, ..t }
            }
            Some(_) => return Ok(()),
        };
        let old = self.ticket_path(&self.ticket.expect("renewing a ticket we have"));
        let new = self.ticket_path(&renewed);
        match self.fs.rename(&old, &new) {
            Ok(()) => {}
            // Someone removed it as expired (we were slow), or a retried rename did succeed:
            // either way our place is the same, under the new expiry.
            Err(e) if e.kind == FsErrorKind::NotFound => {
                if !self.fs.exists(&new).unwrap_or(false) {
                    self.create_ticket(&new)?;
                }
            }
            Err(source) => return Err(io("rename", format!("{old} -> {new}"), source)),
        }
        self.ticket = Some(renewed);
        Ok(())
    }

    /// Give our ticket back (best effort: an expired ticket stops counting anyway).
    fn leave_queue(&mut self) {
        self.withdraw_ticket();
        self.ticket = None;
        self.place = None;
        self.last_seen = None;
        self.ticket_withdrawn = false;
    }

    /// How many waiters are still ahead of us, judging by our place at the last full look and
    /// the fence now; `None` without a ticket (or a place on record).
    fn estimated_place(&self, fence: u64) -> Option<usize> {
        let place = self.place.filter(|_| self.ticket.is_some())?;
        let moved = usize::try_from(fence.saturating_sub(place.fence)).unwrap_or(usize::MAX);
        Some(place.ahead.saturating_sub(moved))
    }

    /// Remove our ticket's directory, keeping our place on record.
    fn withdraw_ticket(&mut self) {
        if let Some(ticket) = self.ticket
            && !self.ticket_withdrawn
        {
            let _ = self.fs.remove_dir(&self.ticket_path(&ticket));
            self.ticket_withdrawn = true;
        }
    }

    fn ticket_path(&self, ticket: &Ticket) -> String {
        format!("{}/{}", self.queue_dir, ticket.encode())
    }

    /// Create our ticket, and the queue directory first if nobody has queued for this lock.
    fn create_ticket(&self, path: &str) -> Result<(), Error> {
        match self.fs.create_dir(path) {
            Err(e) if e.kind == FsErrorKind::NotFound => {
                create_shared_dir(&self.fs, &self.queue_dir)?;
                create_own_dir(&self.fs, path)
            }
            Err(e) if e.kind != FsErrorKind::AlreadyExists => {
                Err(io("create-dir", path.to_owned(), e))
            }
            _ => Ok(()),
        }
    }

    /// Extend the deadline to now + timeout. Returns the new deadline.
    ///
    /// Succeeds even after the deadline if nobody took the lock over meanwhile (the rename is
    /// a compare-and-swap on the exact entry, so nobody can have held it since).
    pub fn refresh(&mut self) -> Result<u64, Error> {
        if self.held.is_none() {
            return Err(Error::NotHeld);
        }
        let now = self.env.now_ms();
        // A marked entry stays marked, but its record of when it was written goes: this
        // rename is the new write, and the lockdir's mtime says when.
        let renew = |h: &Holder| Holder {
            deadline_ms: now.saturating_add(h.timeout_ms),
            written_ms: None,
            ..h.clone()
        };
        let from = self
            .swap_own(|h| Entry::Held(renew(h)), "refresh")
            .map_err(|e| self.lost(e))?;
        let renewed = renew(&from);
        let deadline = renewed.deadline_ms;
        self.held = Some(renewed);
        Ok(deadline)
    }

    /// Give the lock up. Changes nothing if it was taken over (reports `Compromised`).
    pub fn release(&mut self) -> Result<Released, Error> {
        let held = self.held.clone().ok_or(Error::NotHeld)?;
        let late = self.env.now_ms() > held.deadline_ms;
        let to = |waiters| Entry::Free {
            fence: held.fence,
            waiters,
        };
        // PLANTED BUG (b), only with the `planted-bugs` feature and only when a test switches
        // it on: release whatever entry is current, ours or not.
        #[cfg(feature = "planted-bugs")]
        {
            let own = Entry::Held(held.clone());
            let from = crate::planted::release_from(own.clone(), || {
                match read_entry(&self.fs, &self.lockdir)? {
                    Read::Entry(current) => Ok(Some(current)),
                    _ => Ok(None),
                }
            })?;
            if from != own {
                self.swap(&from, &to(false), "release")
                    .map_err(|e| self.lost(e))?;
                self.held = None;
                return Ok(Released::InTime);
            }
        }
        let from = self
            .swap_own(|h| to(h.waiters), "release")
            .map_err(|e| self.lost(e))?;
        self.held = None;
        // Nobody queued while we held it: our next acquire may try `free.k` straight away.
        self.known_free = (!from.waiters).then_some(held.fence);
        Ok(if late {
            Released::Late
        } else {
            Released::InTime
        })
    }

    /// Rename our own entry to `make(our record)`; returns the record renamed from. A waiter
    /// may have marked our entry since we wrote it (`held+`): then the rename fails, the state
    /// shows our own acquisition marked, and we rename from that name instead.
    fn swap_own(
        &mut self,
        make: impl Fn(&Holder) -> Entry,
        operation: &'static str,
    ) -> Result<Holder, Error> {
        let mut held = self.held.clone().ok_or(Error::NotHeld)?;
        loop {
            match self.swap(&Entry::Held(held.clone()), &make(&held), operation) {
                Ok(()) => return Ok(held),
                Err(Error::NotHeld) if !held.waiters => {
                    // The same acquisition (fence and token; the label in the name may be cut
                    // short), now marked: its name is our record's, marked, with the time of
                    // our write its marker recorded.
                    match read_entry(&self.fs, &self.lockdir)? {
                        Read::Entry(Entry::Held(now))
                            if now.waiters
                                && now.token == held.token
                                && now.fence == held.fence =>
                        {
                            let marked = Holder {
                                waiters: true,
                                written_ms: now.written_ms,
                                ..held.clone()
                            };
                            self.held = Some(marked.clone());
                            held = marked;
                        }
                        _ => return Err(Error::NotHeld),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forget the lock without releasing it, as a crashed holder would (for tests and for
    /// callers that hand the lock to another process).
    pub fn abandon(&mut self) -> Option<Holder> {
        self.held.take()
    }

    /// After a failed compare-and-swap on our own entry: drop our belief and say who has it.
    fn lost(&mut self, err: Error) -> Error {
        if err != Error::NotHeld {
            return err;
        }
        let fence = self.held.take().map_or(0, |h| h.fence);
        let now_held_by = match self.inspect() {
            Ok(LockState::Held(h) | LockState::Expired(h)) => Some(h),
            _ => None,
        };
        Error::Compromised { fence, now_held_by }
    }

    /// Rename our state entry `from` to `to`. `Err(NotHeld)` if `from` is gone.
    fn swap(&self, from: &Entry, to: &Entry, operation: &'static str) -> Result<(), Error> {
        let from_path = format!("{}/{}", self.lockdir, from.encode());
        let to_path = format!("{}/{}", self.lockdir, to.encode());
        match self.fs.rename(&from_path, &to_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind == FsErrorKind::NotFound => {
                // On a network filesystem a retried rename that did succeed can report
                // NotFound: if the state is exactly what we renamed to, it was ours.
                match read_entry(&self.fs, &self.lockdir) {
                    Ok(Read::Entry(now)) if &now == to => Ok(()),
                    _ => Err(Error::NotHeld),
                }
            }
            Err(source) => Err(io(operation, from_path, source)),
        }
    }

    /// The second half of the takeover rule (borg's): the lock must also look expired by the
    /// filesystem's own clock, so a waiter whose clock runs ahead cannot take a live lock.
    ///
    /// The lockdir's mtime is the filesystem's time of the last rename inside it, that is of
    /// the acquisition or refresh that wrote the current deadline (or of a later mark, which
    /// only delays this). The filesystem's "now" is the mtime of a probe directory made for
    /// the purpose. Both readings come from one clock (the file server's, on a network
    /// filesystem), so client clocks do not matter. A filesystem without timestamps passes
    /// the check (the waiter's own clock decides).
    ///
    /// Kernels stamp mtimes from a coarse clock that lags real time (see
    /// [`FS_CLOCK_LAG_MS`]) and store them with a granularity (see [`fs_clock_margin_ms`]),
    /// so the lockdir's mtime can be *earlier* than the holder's clock reading taken before
    /// its rename; neither can make a reading *later* than the moment it was taken. Say the
    /// holder read its clock at `h` (its deadline is `h + timeout`) and renamed at `r >= h`,
    /// stamped `m >= r - margin`; the probe was made at `p`, stamped `n <= p`. The rule
    /// `n - m > timeout + margin` gives `p >= n > m + timeout + margin >= r + timeout >=
    /// h + timeout`: more than the timeout has passed on the filesystem's clock since the
    /// holder's reading, so a holder whose clock runs at the filesystem's rate is past its
    /// deadline. Without the margin, a takeover came up to several ms before the deadline
    /// (`protocol/tests/fs_clock.rs`).
    ///
    /// A marked entry records when it was written ([`Holder::written_ms`], read by its
    /// marker before the mark moved the lockdir's mtime); the earlier of that and the
    /// lockdir's mtime is used, so a mark does not delay the takeover of a dead holder. The
    /// record is only a name in the lockdir: one made up (by hand, or by a hostile plugin
    /// that can rename entries anyway) can at worst make rule (b) pass early, never make it
    /// pass on its own: rule (a), the waiter's own clock past the deadline plus the skew
    /// margin, is still required. One in the future is ignored (the lockdir's mtime is
    /// earlier), so it cannot wedge the lock either.
    fn stale_by_filesystem_clock(&self, holder: &Holder) -> Result<bool, Error> {
        let Some(mtime) = self
            .fs
            .modified_ms(&self.lockdir)
            .map_err(|e| io("stat", self.lockdir.clone(), e))?
        else {
            return Ok(true);
        };
        let changed = holder.written_ms.map_or(mtime, |w| w.min(mtime));
        let fs_now = filesystem_now(&self.fs, &self.env, &self.name)?;
        Ok(fs_now.is_none_or(|now| {
            let margin = fs_clock_margin_ms(changed, now);
            // PLANTED BUG (c), only with the `planted-bugs` feature and only when a test
            // switches it on: no margin for the filesystem clock's lag and granularity.
            #[cfg(feature = "planted-bugs")]
            let margin = crate::planted::clock_margin(margin);
            now.saturating_sub(changed) > holder.timeout_ms.saturating_add(margin)
        }))
    }

    /// One read-decide-rename step.
    fn attempt(&mut self) -> Result<Attempt, Error> {
        if let Some(fence) = self.known_free.take()
            && let Some(done) = self.attempt_known_free(fence)?
        {
            return Ok(done);
        }
        let entry = match read_entry(&self.fs, &self.lockdir)? {
            Read::Entry(entry) => entry,
            Read::Unsettled => return Ok(Attempt::LostRace(None)),
            Read::Missing => {
                create_lockdir(&self.fs, &self.env, &self.name)?;
                return Ok(Attempt::LostRace(None));
            }
        };
        // Nobody can ever be granted this lock again: say so now rather than wait for it.
        if entry.fence() == u64::MAX {
            return Err(self.fences_exhausted());
        }
        let now = self.env.now_ms();
        // Far back in line, and the lock is held within its deadline, or free but just
        // changed hands (the head takes it in a moment): a look at the state alone is enough.
        // A state that stays free or expires is looked at in full, so a place overestimated
        // (waiters ahead gave up) cannot keep the real head from knowing it is next.
        let settled = match &entry {
            Entry::Held(h) => now <= h.deadline_ms.saturating_add(self.options.max_clock_skew_ms),
            Entry::Free { .. } => self.last_seen.as_ref() != Some(&entry),
        };
        self.last_seen = Some(entry.clone());
        if settled
            && let Some(ahead) = self.estimated_place(entry.fence())
            && ahead > 2
        {
            return Ok(Attempt::Wait(Wait {
                holder: match &entry {
                    Entry::Held(h) => Some(h.clone()),
                    Entry::Free { .. } => None,
                },
                ahead,
                state: Some(entry),
                last_arrival: None,
            }));
        }
        // Only a marked state, or our own place in the queue, is a reason to read the queue.
        // First in line at the last full look: still first (newcomers queue behind what they
        // see), so the lock is ours to try without reading the whole queue again.
        let first = self.estimated_place(entry.fence()) == Some(0)
            && !matches!(&entry, Entry::Held(h) if now <= h.deadline_ms.saturating_add(self.options.max_clock_skew_ms));
        let queue = if first {
            // Others may have queued since that look: take the lock marked, as if someone
            // were behind (if nobody is, the next acquire only finds an empty queue).
            Queue {
                behind: self.place.map_or(1, |p| p.behind.max(1)),
                ..Queue::default()
            }
        } else {
            let tickets = match entry.waiters() || self.ticket.is_some() {
                true => read_tickets(&self.fs, &self.queue_dir)?,
                false => Vec::new(),
            };
            self.queue(&tickets, now)
        };
        if self.ticket.is_some() && !first {
            self.place = Some(Place {
                ahead: queue.ahead,
                behind: queue.behind,
                fence: entry.fence(),
            });
        }
        let wait = |holder: Option<&Holder>| {
            Ok(Attempt::Wait(Wait {
                holder: holder.cloned(),
                ahead: queue.ahead,
                state: Some(entry.clone()),
                last_arrival: queue.last_arrival,
            }))
        };
        let took_over = match &entry {
            Entry::Free { .. } if queue.ahead > 0 => return wait(None),
            Entry::Free { .. } => None,
            Entry::Held(h) => {
                if now <= h.deadline_ms.saturating_add(self.options.max_clock_skew_ms)
                    || queue.ahead > 0
                    || !self.stale_by_filesystem_clock(h)?
                {
                    return wait(Some(h));
                }
                // A takeover means someone stopped or crashed: tidy what crashes leave. Done
                // before the rename, so that nothing lies between gaining the lock and saying so.
                sweep_leftovers(&self.fs, &self.env, &self.name);
                Some(h.clone())
            }
        };
        // Others are queued behind us: mark our entry at once, so that we do not take the
        // lock straight back after releasing it.
        let mine = self.new_holder(entry.fence(), now, queue.behind > 0)?;
        let to = Entry::Held(mine.clone());
        #[cfg(not(feature = "planted-bugs"))]
        let swapped = self.swap(&entry, &to, "acquire");
        // PLANTED BUG (a), only with the `planted-bugs` feature and only when a test switches
        // it on: take over by remove + create instead of the rename.
        #[cfg(feature = "planted-bugs")]
        let swapped = crate::planted::take_over_by_remove(
            &self.fs,
            &self.lockdir,
            &entry,
            &to,
            took_over.is_some(),
        )
        .unwrap_or_else(|| self.swap(&entry, &to, "acquire"));
        match swapped {
            Ok(()) => Ok(self.claimed(mine, took_over)),
            Err(Error::NotHeld) => Ok(Attempt::LostRace(took_over)),
            Err(e) => Err(e),
        }
    }

    /// Our rename took the lock: leave the queue, then say so.
    ///
    /// The ticket stays in the queue until the rename has decided, so that a waiter behind us
    /// that looks meanwhile still sees us ahead of it. (Withdrawn before the rename, a pause
    /// between the two let the next waiter find nobody ahead and overtake us:
    /// `tests/fairness.rs`, `a_waiter_paused_while_it_takes_its_turn_is_not_overtaken_...`.)
    /// That puts one step between gaining the lock and reporting it, and a holder paused
    /// there past its deadline may have been taken over meanwhile: it must not report a grant
    /// it may no longer have. It gives the grant back (a compare-and-swap on its own entry,
    /// which changes nothing if it was taken over) and looks again, keeping its place.
    fn claimed(&mut self, mine: Holder, took_over: Option<Holder>) -> Attempt {
        self.withdraw_ticket();
        if self.env.now_ms() > mine.deadline_ms {
            self.held = Some(mine);
            let _ = self.release();
            self.held = None;
            return Attempt::LostRace(took_over);
        }
        self.granted(mine, took_over)
    }

    /// The fast path after our own unmarked release: rename `free.<fence>` without listing.
    /// `None` if that entry is gone (someone else took the lock meanwhile).
    fn attempt_known_free(&mut self, fence: u64) -> Result<Option<Attempt>, Error> {
        let now = self.env.now_ms();
        let mine = self.new_holder(fence, now, false)?;
        let free = Entry::Free {
            fence,
            waiters: false,
        };
        match self.swap(&free, &Entry::Held(mine.clone()), "acquire") {
            Ok(()) => Ok(Some(self.granted(mine, None))),
            Err(Error::NotHeld) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A holder record for acquiring the state whose last fence is `last_fence`; refused if
    /// that was the last fence there is (a fence must never repeat: two holders with the
    /// same fence would both pass a resource's check).
    fn new_holder(&self, last_fence: u64, now: u64, waiters: bool) -> Result<Holder, Error> {
        let fence = last_fence
            .checked_add(1)
            .ok_or_else(|| self.fences_exhausted())?;
        Ok(Holder {
            label: self.options.holder.clone(),
            fence,
            since_ms: now,
            deadline_ms: now.saturating_add(self.options.timeout_ms),
            timeout_ms: self.options.timeout_ms,
            token: self.env.random_u64(),
            waiters,
            written_ms: None,
        })
    }

    fn fences_exhausted(&self) -> Error {
        Error::FencesExhausted {
            path: self.lockdir.clone(),
        }
    }

    fn granted(&mut self, mine: Holder, took_over: Option<Holder>) -> Attempt {
        let grant = Grant {
            fence: mine.fence,
            deadline_ms: mine.deadline_ms,
            took_over,
        };
        self.held = Some(mine);
        // Our turn came: our place in the queue (kept from an earlier wait, perhaps) is done.
        self.leave_queue();
        Attempt::Acquired(grant)
    }

    /// Where this handle stands among the live tickets; removes tickets that expired.
    ///
    /// A ticket's expiry is on its owner's clock, which may run far ahead of ours (or be made
    /// up), so it is not trusted beyond what our own clock allows: a ticket counts only while
    /// both (a) our clock is not past its claimed expiry plus the skew margin, and (b) we have
    /// seen that exact name for no longer than [`TICKET_LIFETIME_MS`] plus the skew margin, by
    /// our monotonic clock. A live waiter renames its ticket (the expiry is in the name) before
    /// half its lifetime is gone, so its ticket never stays one name that long; a ticket that
    /// does is dead, whatever it claims, and is removed like an expired one. So no ticket holds
    /// up the line for longer than its lifetime plus the skew margin by the reader's clock.
    fn queue(&mut self, tickets: &[Ticket], now: u64) -> Queue {
        let seen_now = self.env.monotonic_ms();
        let earlier = std::mem::take(&mut self.tickets_seen);
        // Only the names of this listing are remembered: a renewed ticket is a new name.
        let mut seen = BTreeMap::new();
        let patience = TICKET_LIFETIME_MS.saturating_add(self.options.max_clock_skew_ms);
        let mut queue = Queue::default();
        let own = self.ticket.map(|t| t.token);
        for ticket in tickets {
            if Some(ticket.token) == own {
                continue;
            }
            let first_seen = *earlier.get(ticket).unwrap_or(&seen_now);
            let expired = now
                > ticket
                    .expires_ms
                    .saturating_add(self.options.max_clock_skew_ms);
            let stuck = seen_now.saturating_sub(first_seen) > patience;
            if expired || stuck {
                let _ = self.fs.remove_dir(&self.ticket_path(ticket));
            } else {
                seen.insert(*ticket, first_seen);
                queue.last_arrival = queue.last_arrival.max(Some(ticket.arrival_ms));
                if self.ticket.is_none_or(|mine| ticket.is_before(&mine)) {
                    queue.ahead += 1;
                } else {
                    queue.behind += 1;
                }
            }
        }
        self.tickets_seen = seen;
        queue
    }
}

impl<F: Fs, E: Env> Drop for Lock<F, E> {
    fn drop(&mut self) {
        if self.held.is_some() {
            // Nobody is left to tell; a lost lock needs no cleanup.
            let _ = self.release();
        }
        self.leave_queue();
    }
}

enum Attempt {
    Acquired(Grant),
    /// Not ours to take now.
    Wait(Wait),
    /// The state changed under us; the expired holder we tried to take over, if any.
    LostRace(Option<Holder>),
}

/// Why an attempt did not take the lock.
struct Wait {
    /// Who holds it (`None`: it is free, but others queued first).
    holder: Option<Holder>,
    /// How many live tickets come before ours (all of them if we have none).
    ahead: usize,
    /// The state entry seen.
    state: Option<Entry>,
    /// The latest arrival among the live tickets seen (others' only), if the queue was read.
    last_arrival: Option<u64>,
}

/// Where a waiter stood at its last full look at the queue.
#[derive(Clone, Copy)]
struct Place {
    /// Live tickets before ours.
    ahead: usize,
    /// Live tickets after ours.
    behind: usize,
    /// The last fence handed out then.
    fence: u64,
}

/// Live tickets other than ours, before and after ours, and the latest arrival among them.
#[derive(Default)]
struct Queue {
    ahead: usize,
    behind: usize,
    last_arrival: Option<u64>,
}

/// How fast the lock changes hands, as one waiter sees it: from the holders it saw, their
/// fences and when they took the lock (their own `since`), so that neither its own sleeps nor
/// a long hold before it started waiting skew the estimate.
#[derive(Default)]
struct Pace {
    /// The first and the latest holder seen: (fence, since).
    first: Option<(u64, u64)>,
    last: Option<(u64, u64)>,
}

impl Pace {
    /// Seen `holder` holding the lock.
    fn saw(&mut self, holder: &Holder) {
        let seen = (holder.fence, holder.since_ms);
        self.first.get_or_insert(seen);
        self.last = Some(seen);
    }

    /// About half the time the `ahead` waiters before us are expected to take (µs), at least
    /// [`HEAD_POLL_US`], at most `cap_us`. `None` until two holders were seen.
    fn pause_us(&self, ahead: usize, cap_us: u64) -> Option<u64> {
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

fn io(operation: &'static str, path: String, source: FsError) -> Error {
    Error::Io {
        operation,
        path,
        source,
    }
}

/// What one look at a lockdir found.
enum Read {
    /// No lockdir, or one that stays empty (made by hand, or by the original lockbydir.py):
    /// it carries no state, and creating the lock replaces it.
    Missing,
    /// The state entry.
    Entry(Entry),
    /// Every listing raced with a rename (it showed the entry twice, or not at all) and they
    /// kept changing: the lock is busy changing hands.
    Unsettled,
}

/// Read the state entry of `lockdir`.
///
/// Listing a directory is not atomic with respect to a rename inside it, so a listing can
/// show the old and the new name, or neither. Such a listing is repeated; only one that stays
/// the same every time is believed: an empty one means no state; one with names but no state
/// entry (names the protocol never writes, see [`crate::entry`]), or with two entries, means
/// damage, reported as [`Error::Corrupt`] at once rather than waited on.
fn read_entry(fs: &impl Fs, lockdir: &str) -> Result<Read, Error> {
    let mut first: Option<Vec<String>> = None;
    let mut stable = true;
    for _ in 0..READ_RETRIES {
        let mut names = match fs.read_dir(lockdir) {
            Ok(names) => names,
            Err(e) if e.kind == FsErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(io("read-dir", lockdir.to_owned(), e)),
        };
        let mut entries = names.iter().filter_map(|n| Entry::parse(n));
        if let (Some(only), None) = (entries.next(), entries.next()) {
            return Ok(Read::Entry(only));
        }
        names.sort();
        match &first {
            None => first = Some(names),
            Some(seen) => stable &= *seen == names,
        }
    }
    let names = first.unwrap_or_default();
    let entries: Vec<&String> = names.iter().filter(|n| Entry::parse(n).is_some()).collect();
    let detail = match (stable, names.len(), entries.len()) {
        (false, _, _) => return Ok(Read::Unsettled),
        (true, 0, _) => return Ok(Read::Missing),
        (true, n, 0) => format!(
            "no state entry, only {n} name{} lockbydir never writes: {}",
            if n == 1 { "" } else { "s" },
            names.join(", ")
        ),
        (true, _, n) => format!(
            "{n} state entries: {}",
            entries
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(Error::Corrupt {
        path: lockdir.to_owned(),
        detail,
    })
}

/// The tickets in a lock's queue directory (none if it does not exist yet). A listing torn
/// by a concurrent rename can miss or double a ticket: that only affects the order of service.
fn read_tickets(fs: &impl Fs, queue_dir: &str) -> Result<Vec<Ticket>, Error> {
    match fs.read_dir(queue_dir) {
        Ok(names) => {
            // A listing torn by a renewal can show one ticket under two names: count it once.
            let mut tickets: Vec<Ticket> = names.iter().filter_map(|n| Ticket::parse(n)).collect();
            tickets.sort_by_key(|t| (t.token, std::cmp::Reverse(t.expires_ms)));
            tickets.dedup_by_key(|t| t.token);
            Ok(tickets)
        }
        Err(e) if e.kind == FsErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io("read-dir", queue_dir.to_owned(), e)),
    }
}

/// Create a directory whose name is ours alone (it carries a fresh random token). On a network
/// filesystem a retried `mkdir` that did succeed reports that the directory exists: with a name
/// nobody else uses, that can only be our own, so it counts as made.
fn create_own_dir(fs: &impl Fs, path: &str) -> Result<(), Error> {
    match fs.create_dir(path) {
        Err(e) if e.kind != FsErrorKind::AlreadyExists => Err(io("create-dir", path.to_owned(), e)),
        _ => Ok(()),
    }
}

/// Create a directory others may be creating too (the queue directory): it existing already
/// is success.
fn create_shared_dir(fs: &impl Fs, path: &str) -> Result<(), Error> {
    create_own_dir(fs, path)
}

/// The filesystem's "now": the mtime of a probe directory made for the purpose (`None` if the
/// filesystem keeps no timestamps).
pub(crate) fn filesystem_now(
    fs: &impl Fs,
    env: &impl Env,
    name: &LockName,
) -> Result<Option<u64>, Error> {
    let probe = format!(".{name}.{:016x}.probe", env.random_u64());
    create_own_dir(fs, &probe)?;
    let now = fs.modified_ms(&probe);
    let _ = fs.remove_dir(&probe);
    now.map_err(|e| io("stat", probe, e))
}

/// How far behind real time a filesystem's mtime may be (ms), granularity aside: how much
/// *earlier* than a clock reading taken just before a change the change's mtime may be.
///
/// Linux stamps mtimes from its coarse clock, which advances once per tick (4 ms at HZ=250,
/// 10 ms at HZ=100) and, on a CPU that was idle (the tick stops), is stale until the next
/// tick: measured here (kernel 6.18, HZ=250, tmpfs and ext4; `cargo test --release -p
/// lockbydir-protocol --test fs_clock -- --ignored --nocapture`) up to 9.0 ms, about two
/// ticks, for a rename right after an idle spell (and up to 7.5 ms for 0.3 % of renames back
/// to back). Those ticks at HZ=100 are about 23 ms; readings are also cut to whole
/// milliseconds (up to 1 ms more). 30 ms covers both, with room; it costs a takeover of a
/// dead holder 30 ms.
pub const FS_CLOCK_LAG_MS: u64 = 30;

/// Timestamp granularities recognised from the readings themselves (ms), coarsest first:
/// FAT's 2 s; whole seconds (ext3 with small inodes, HFS+, some NFS servers and FUSE
/// filesystems); 100 ms and 10 ms steps.
const TIMESTAMP_GRANULARITIES_MS: [u64; 4] = [2_000, 1_000, 100, 10];

/// The margin rule (b) adds to the holder's timeout, for the lockdir's mtime `changed` and
/// the filesystem's "now" `now` (ms): [`FS_CLOCK_LAG_MS`] plus the granularity both readings
/// show (if both are whole seconds, the filesystem is taken to keep whole seconds). A
/// filesystem with finer timestamps whose two readings happen to be whole seconds is taken
/// for a coarse one: that only delays this takeover.
pub fn fs_clock_margin_ms(changed: u64, now: u64) -> u64 {
    let granularity = TIMESTAMP_GRANULARITIES_MS
        .into_iter()
        .find(|&g| changed.is_multiple_of(g) && now.is_multiple_of(g))
        .unwrap_or(0);
    FS_CLOCK_LAG_MS + granularity
}

/// Scratch directories (staging and probe) older than this, by the filesystem's clock, were
/// left by a process that crashed while using them.
pub const LEFTOVER_AGE_MS: u64 = 10 * 60 * 1000;

/// Whether `entry` of the lock directory is a scratch directory of lock `name`:
/// `.<name>.<16 hex digits>.staging` or `.probe`.
fn is_scratch_of(entry: &str, name: &LockName) -> bool {
    let Some(rest) = entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(name.as_str()))
    else {
        return false;
    };
    let Some(token) = rest.strip_prefix('.').and_then(|r| {
        r.strip_suffix(".staging")
            .or_else(|| r.strip_suffix(".probe"))
    }) else {
        return false;
    };
    token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Remove lock `name`'s scratch directories that crashed processes left behind, judged old by
/// the filesystem's clock. Best effort: nothing here affects the lock's state, and a filesystem
/// without timestamps is left alone.
fn sweep_leftovers(fs: &impl Fs, env: &impl Env, name: &LockName) {
    let Ok(entries) = fs.read_dir(".") else {
        return;
    };
    let scratch: Vec<String> = entries
        .into_iter()
        .filter(|e| is_scratch_of(e, name))
        .collect();
    if scratch.is_empty() {
        return;
    }
    let Ok(Some(now)) = filesystem_now(fs, env, name) else {
        return;
    };
    for dir in scratch {
        if let Ok(Some(made)) = fs.modified_ms(&dir)
            && now.saturating_sub(made) > LEFTOVER_AGE_MS
        {
            let _ = fs.remove_dir(&format!("{dir}/{}", INITIAL.encode()));
            let _ = fs.remove_dir(&dir);
        }
    }
}

/// The state a new lockdir starts with.
const INITIAL: Entry = Entry::Free {
    fence: 0,
    waiters: false,
};

/// Create `N.lockdir` holding `free.0`, unless someone else creates it first.
fn create_lockdir(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<(), Error> {
    let lockdir = name.lockdir();
    let staging = format!(".{name}.{:016x}.staging", env.random_u64());
    let initial = format!("{staging}/{}", INITIAL.encode());
    let cleanup = || {
        let _ = fs.remove_dir(&initial);
        let _ = fs.remove_dir(&staging);
    };
    create_own_dir(fs, &staging)?;
    if let Err(e) = create_own_dir(fs, &initial) {
        cleanup();
        return Err(e);
    }
    if let Err(e) = fs.rename(&staging, &lockdir) {
        cleanup();
        // Losing to another creator is expected: the lockdir exists (and is not empty). Any
        // other failure leaves no lockdir behind.
        if fs.read_dir(&lockdir).is_err() {
            return Err(io("rename", format!("{staging} -> {lockdir}"), e));
        }
    }
    Ok(())
}

/// The state of lock `name` now, as a handle with no skew margin sees it (see
/// [`Lock::inspect`]).
pub fn inspect(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<LockState, Error> {
    Lock::new(fs, env, name.as_str(), Options::default())?.inspect()
}

/// One lock found by [`list_locks`]: its name, and its state or why it cannot be read.
pub type ListedLock = (LockName, Result<LockState, Error>);

/// Every lock in the lock directory with its state, sorted by name. Only a lock directory
/// that cannot be listed fails the whole call; a lockdir that cannot be read, or holds
/// something the protocol never writes, is listed with its own error, among the others.
pub fn list_locks(fs: &impl Fs, env: &impl Env) -> Result<Vec<ListedLock>, Error> {
    let mut names: Vec<LockName> = fs
        .read_dir(".")
        .map_err(|e| io("read-dir", ".".into(), e))?
        .iter()
        .filter_map(|n| LockName::from_lockdir(n))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let state = inspect(fs, env, &name);
            (name, state)
        })
        .collect())
}
