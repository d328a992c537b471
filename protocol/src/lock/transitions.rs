//! The compare-and-swap steps: every change of a lock's state is one rename of its exact
//! state entry, and this is why that is safe.
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
//! # Why two holders cannot both get in
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
//! # Renaming a name that was not read
//!
//! Two steps rename a state entry whose name they did not just read, but predicted:
//!
//! - An unmarked release remembers `free.k`, and the next acquire by the same handle first
//!   tries to rename that exact name (one rename per uncontended acquire, and how a releaser
//!   takes the lock back under bounded fairness).
//! - The first in line, asleep on the holder's entry `held….k…` and woken by its change,
//!   first tries to rename `free.k` (`free+.k` if the entry was marked): the name that
//!   entry's release leaves (see `Lock::attempt_after_release`).
//!
//! Neither needs the prediction to be right. The rename is the same compare-and-swap as any
//! acquire from a free state: it succeeds only if that exact name is the state entry at that
//! moment, and `free.k` is a free state whatever happened before (the lock was released with
//! fence k and not taken since, or it would have another name; names never come back, since
//! fences only grow). The new entry gets fence k+1, as any acquire of `free.k` would. If the
//! prediction is wrong (the holder refreshed, was taken over, someone else took the lock
//! first) the name is not there, the rename fails with `NotFound`, nothing changed, and the
//! attempt looks as usual. On a network filesystem a retried rename that did succeed but
//! reports `NotFound` is recognised as every rename is (see [`Lock::swap`]).
//!
//! A waiter's acquisition carries its ticket's token, so that the waiter behind it, woken by
//! that ticket's removal, can tell from the state alone that it was served (see
//! `lock/queue.rs`). A ticket serves one acquisition only (a grant given back makes the
//! ticket again with a fresh token), so tokens stay one per acquisition, and the names of two
//! acquisitions differ in their fences anyway. (The one exception: an acquire rename whose
//! success was never reported, a retried one reported `NotFound` and the entry taken over
//! before the look, leaves the ticket and its token to the waiter's next acquisition, under
//! a greater fence; the waiter behind may then take the first for the second and believe
//! itself first a little early, which only the order of service feels.)
//!
//! # Fencing tokens
//!
//! The fence is part of the entry: `free.k` → `held.k+1`, take over `held.k` → `held.k+1`,
//! release keeps `k`. Since the lockdir is never removed by the protocol, every acquisition's
//! fence is greater than every earlier one's, across processes and hosts.

use crate::entry::{Entry, Holder};
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsErrorKind};

use super::directory::{Read, create_lockdir, io, read_entry, sweep_leftovers};
use super::queue::{Place, Predecessor, Queue, read_tickets};
use super::{Fairness, Grant, Lock, LockState, Released};

impl<F: Fs, E: Env> Lock<F, E> {
    /// One read-decide-rename step.
    pub(super) fn attempt(&mut self) -> Result<Attempt, Error> {
        if let Some(fence) = self.known_free.take() {
            if let Some(done) = self.attempt_known_free(fence)? {
                return Ok(done);
            }
            // Someone else took it: whatever this handle kept from the line is over.
            self.kept_since = None;
        }
        // Woken, first in line, on the holder's entry: its release leaves a name we know.
        let mut seen = None;
        if let Some(free) = self.after_release.take() {
            match self.attempt_after_release(free)? {
                AfterRelease::Done(done) => return Ok(done),
                AfterRelease::Saw(state) => seen = state,
            }
        }
        // The state as the failed rename's look just read it, or a look now.
        let read = match seen {
            Some(state) => Read::Entry(state),
            None => read_entry(&self.fs, &self.lockdir)?,
        };
        let entry = match read {
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
        // Woken while we watched the ticket just before ours: if its owner holds the lock now,
        // it was served (a waiter's holder token is its ticket's), so we are first. If its
        // ticket is still there, or renewed, our place stands. Otherwise (it gave up, renewed
        // late, or already let go) the queue is read in full.
        if let Some(predecessor) = self.watched_predecessor.take() {
            self.place = match &entry {
                Entry::Held(h) if h.token == predecessor.token => Some(Place {
                    ahead: 0,
                    behind: self.place.map_or(0, |p| p.behind),
                    fence: h.fence,
                    predecessor: None,
                }),
                _ => match self.place {
                    Some(place) => place
                        .predecessor
                        .filter(|p| p.ticket == predecessor)
                        .and_then(|p| self.predecessor_still_waiting(&p))
                        .map(|p| Place {
                            predecessor: Some(p),
                            ..place
                        }),
                    None => None,
                },
            };
        }
        // Far back in line, and the lock is held within its deadline, or free but just
        // changed hands (the head takes it in a moment): a look at the state alone is enough.
        // A state that stays free or expires is looked at in full, so a place overestimated
        // (waiters ahead gave up) cannot keep the real head from knowing it is next.
        let held_live = matches!(&entry, Entry::Held(h)
            if now <= h.deadline_ms.saturating_add(self.options.max_clock_skew_ms));
        let settled = match &entry {
            Entry::Held(_) => held_live,
            Entry::Free { .. } => self.last_seen.as_ref() != Some(&entry),
        };
        self.last_seen = Some(entry.clone());
        // First in line, and the lock held within its deadline: nothing to do but wait for
        // it, and nothing in the queue can change that (newcomers queue behind us).
        if held_live && self.known_first(entry.fence()) {
            let Entry::Held(holder) = &entry else {
                unreachable!("held_live")
            };
            return Ok(Attempt::Wait(Wait {
                holder: Some(holder.clone()),
                ahead: 0,
                state: Some(entry.clone()),
                last_arrival: None,
                predecessor: None,
            }));
        }
        if settled
            && let Some(ahead) = self.place_by_fences(entry.fence())
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
                predecessor: self.place.and_then(|p| p.predecessor),
            }));
        }
        // Only a marked state, or our own place in the queue, is a reason to read the queue.
        // First in line at the last full look: still first (newcomers queue behind what they
        // see), so the lock is ours to try without reading the whole queue again.
        let first = self.known_first(entry.fence()) && !held_live;
        let queue = if first {
            // Others may have queued since that look: take the lock marked, as if someone
            // were behind (if nobody is, the next acquire only finds an empty queue).
            Queue {
                behind: self.place.map_or(1, |p| p.behind.max(1)),
                ..Queue::default()
            }
        } else {
            // Bounded fairness does not mark a held entry for every waiter: a newcomer reads
            // the queue to learn whether it is first. Nor does an unmarked free entry say
            // that nobody waits (see `barges` below): a newcomer reads it to learn whether
            // to mark the entry it takes.
            let bounded = self.options.fairness == Fairness::Bounded;
            let tickets = match entry.waiters() || self.ticket.is_some() || bounded {
                true => read_tickets(&self.fs, &self.queue_dir)?,
                false => Vec::new(),
            };
            self.place_among(&tickets, now)
        };
        if self.ticket.is_some() && !first {
            self.place = Some(Place {
                ahead: queue.ahead,
                behind: queue.behind,
                fence: entry.fence(),
                predecessor: queue.predecessor,
            });
        }
        let wait = |holder: Option<&Holder>| {
            Ok(Attempt::Wait(Wait {
                holder: holder.cloned(),
                ahead: queue.ahead,
                state: Some(entry.clone()),
                last_arrival: queue.last_arrival,
                predecessor: queue.predecessor,
            }))
        };
        // Under bounded fairness a holder within its bound releases unmarked (`free.k`) while
        // the line waits; anyone who finds that may take it, as the holder would have, but
        // marked if anyone waits: unmarked, its own bound would not start until the first in
        // line got a CPU to mark it, and it could keep taking the lock back until then
        // (`tests/fairness.rs`, `..._a_newcomer_that_takes_a_kept_release_hands_it_on_...`).
        let barges = self.options.fairness == Fairness::Bounded
            && self.ticket.is_none()
            && matches!(entry, Entry::Free { waiters: false, .. });
        let took_over = match &entry {
            Entry::Free { .. } if queue.ahead > 0 && !barges => return wait(None),
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
        // Others are queued behind us: in first-come-first-served, mark our entry at once, so
        // that we do not take the lock straight back after releasing it.
        let waiting = match barges {
            true => queue.ahead,
            false => queue.behind,
        };
        let mine = self.new_holder(entry.fence(), now, self.marks_own(waiting))?;
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
    pub(super) fn claimed(&mut self, mine: Holder, took_over: Option<Holder>) -> Attempt {
        self.withdraw_ticket();
        // Taken while others wait: under bounded fairness our turn counts from now, so that
        // a turn is the bound plus one hold, not the first hold plus the bound plus another.
        // Read before the check below: nothing may come between that check and the grant.
        let turn_began = (self.options.fairness == Fairness::Bounded && mine.waiters)
            .then(|| self.env.monotonic_us());
        if self.env.now_ms() > mine.deadline_ms {
            self.held = Some(mine);
            let _ = self.release();
            self.held = None;
            // That acquisition's token was our ticket's: the ticket made again for the next
            // try gets a fresh one, so that no two acquisitions share a token.
            if let Some(ticket) = self.ticket.as_mut() {
                ticket.token = self.env.random_u64();
            }
            return Attempt::LostRace(took_over);
        }
        if let Some(began) = turn_began {
            self.kept_since.get_or_insert(began);
        }
        self.granted(mine, took_over)
    }

    /// The fast path after our own unmarked release: rename `free.<fence>` without listing.
    /// `None` if that entry is gone (someone else took the lock meanwhile).
    pub(super) fn attempt_known_free(&mut self, fence: u64) -> Result<Option<Attempt>, Error> {
        let now = self.env.now_ms();
        // Taken back from a waiting line: still marked, so that the next release decides again.
        let mine = self.new_holder(fence, now, self.kept_since.is_some())?;
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

    /// First in line, woken on the holder's entry: rename the free entry its release leaves
    /// without reading the lockdir. That is `free+.k` if the entry was marked, but under
    /// bounded fairness a holder within its bound releases a marked entry unmarked (`free.k`,
    /// for itself to take back; one that tries once and goes never does): when the failed
    /// rename's look (made anyway, see [`Lock::swap`]) shows the other name, that one is
    /// renamed: either is the whole state when it exists, and taking `free.k` is what anyone
    /// who read it may do. Otherwise (the holder refreshed, was taken over, or someone else
    /// took the lock first) the attempt goes on from the state that look read, without
    /// reading it again.
    pub(super) fn attempt_after_release(&mut self, free: Entry) -> Result<AfterRelease, Error> {
        let now = self.env.now_ms();
        // Others may have queued since our last full look: mark, as if someone were behind.
        let behind = self.place.map_or(1, |p| p.behind.max(1));
        let mine = self.new_holder(free.fence(), now, self.marks_own(behind))?;
        let other = Entry::Free {
            fence: free.fence(),
            waiters: !free.waiters(),
        };
        let to = Entry::Held(mine.clone());
        let renamed = match self.swap_or_see(&free, &to, "acquire") {
            // The failed rename's look saw the other name: rename that one.
            Err(Missed::Gone(Some(seen))) if seen == other => {
                self.swap_or_see(&other, &to, "acquire")
            }
            first => first,
        };
        match renamed {
            Ok(()) => Ok(AfterRelease::Done(self.claimed(mine, None))),
            Err(Missed::Gone(seen)) => Ok(AfterRelease::Saw(seen)),
            Err(Missed::Failed(e)) => Err(e),
        }
    }

    /// Whether a new holder with `behind` waiters queued after it marks its own entry:
    /// whenever someone waits (a marked entry is released to the line, under bounded
    /// fairness once the holder has kept it long enough, see [`Lock::release`]).
    pub(super) fn marks_own(&self, behind: usize) -> bool {
        behind > 0
    }

    /// A holder record for acquiring the state whose last fence is `last_fence`; refused if
    /// that was the last fence there is (a fence must never repeat: two holders with the
    /// same fence would both pass a resource's check). A waiter's token is its ticket's, so
    /// that the one behind it sees from the state that it was served; a ticket serves one
    /// acquisition only (see [`Lock::claimed`]), so tokens stay one per acquisition.
    pub(super) fn new_holder(
        &self,
        last_fence: u64,
        now: u64,
        waiters: bool,
    ) -> Result<Holder, Error> {
        let fence = last_fence
            .checked_add(1)
            .ok_or_else(|| self.fences_exhausted())?;
        Ok(Holder {
            label: self.options.holder.clone(),
            fence,
            since_ms: now,
            deadline_ms: now.saturating_add(self.options.timeout_ms),
            timeout_ms: self.options.timeout_ms,
            token: match self.ticket {
                Some(ticket) => ticket.token,
                None => self.env.random_u64(),
            },
            waiters,
            written_ms: None,
        })
    }

    pub(super) fn fences_exhausted(&self) -> Error {
        Error::FencesExhausted {
            path: self.lockdir.clone(),
        }
    }

    pub(super) fn granted(&mut self, mine: Holder, took_over: Option<Holder>) -> Attempt {
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
    ///
    /// A marked entry (waiters queued) is released as `free+.k`, for the first in line; under
    /// bounded fairness it is released unmarked, for this handle to take back, until the
    /// handle's turn has lasted [`super::FAIRNESS_BOUND_US`] (see [`super::Fairness::Bounded`]).
    pub fn release(&mut self) -> Result<Released, Error> {
        let held = self.held.clone().ok_or(Error::NotHeld)?;
        let late = self.env.now_ms() > held.deadline_ms;
        // Under bounded fairness: whether a marked entry may still be released to this
        // handle (it has not kept the lock from the line for the bound yet).
        let (now, may_keep) = match self.options.fairness {
            Fairness::Bounded => {
                let now = self.env.monotonic_us();
                let within = self
                    .kept_since
                    .is_none_or(|since| now.saturating_sub(since) < super::FAIRNESS_BOUND_US);
                (now, within)
            }
            Fairness::Fifo => (0, false),
        };
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
            .swap_own(|h| to(h.waiters && !may_keep), "release")
            .map_err(|e| self.lost(e))?;
        self.held = None;
        let kept = from.waiters && may_keep;
        match kept {
            true => {
                self.kept_since.get_or_insert(now);
            }
            false => self.kept_since = None,
        }
        // Nobody queued while we held it, or we keep it from the line: our next acquire may
        // try `free.k` straight away.
        self.known_free = (!from.waiters || kept).then_some(held.fence);
        Ok(if late {
            Released::Late
        } else {
            Released::InTime
        })
    }

    /// Rename our own entry to `make(our record)`; returns the record renamed from. A waiter
    /// may have marked our entry since we wrote it (`held+`): then the rename fails, the state
    /// shows our own acquisition marked, and we rename from that name instead.
    pub(super) fn swap_own(
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

    /// After a failed compare-and-swap on our own entry: drop our belief and say who has it.
    pub(super) fn lost(&mut self, err: Error) -> Error {
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
    pub(super) fn swap(
        &self,
        from: &Entry,
        to: &Entry,
        operation: &'static str,
    ) -> Result<(), Error> {
        self.swap_or_see(from, to, operation).map_err(|e| match e {
            Missed::Gone(_) => Error::NotHeld,
            Missed::Failed(e) => e,
        })
    }

    /// [`Lock::swap`], saying what the state was when `from` turned out gone (the look that
    /// tells a retried rename that did succeed from one that did not), if it could be read.
    pub(super) fn swap_or_see(
        &self,
        from: &Entry,
        to: &Entry,
        operation: &'static str,
    ) -> Result<(), Missed> {
        let from_path = format!("{}/{}", self.lockdir, from.encode());
        let to_path = format!("{}/{}", self.lockdir, to.encode());
        match self.fs.rename(&from_path, &to_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind == FsErrorKind::NotFound => {
                // On a network filesystem a retried rename that did succeed can report
                // NotFound: if the state is exactly what we renamed to, it was ours.
                match read_entry(&self.fs, &self.lockdir) {
                    Ok(Read::Entry(now)) if &now == to => Ok(()),
                    Ok(Read::Entry(now)) => Err(Missed::Gone(Some(now))),
                    _ => Err(Missed::Gone(None)),
                }
            }
            Err(source) => Err(Missed::Failed(io(operation, from_path, source))),
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
    pub(super) fn mark(&self, holder: &Holder) -> Holder {
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
}

/// What [`Lock::attempt_after_release`] came to.
pub(super) enum AfterRelease {
    /// The lock is ours (or the grant was given back: see [`Lock::claimed`]).
    Done(Attempt),
    /// Neither name was there; the state as the failed rename's look read it, if it could.
    Saw(Option<Entry>),
}

/// Why [`Lock::swap_or_see`] did not rename.
pub(super) enum Missed {
    /// The entry renamed from is gone; the state then, if a listing could tell.
    Gone(Option<Entry>),
    /// Another failure.
    Failed(Error),
}

pub(super) enum Attempt {
    Acquired(Grant),
    /// Not ours to take now.
    Wait(Wait),
    /// The state changed under us; the expired holder we tried to take over, if any.
    LostRace(Option<Holder>),
}

/// Why an attempt did not take the lock.
#[derive(Clone)]
pub(super) struct Wait {
    /// Who holds it (`None`: it is free, but others queued first).
    pub(super) holder: Option<Holder>,
    /// How many live tickets come before ours (all of them if we have none).
    pub(super) ahead: usize,
    /// The state entry seen.
    pub(super) state: Option<Entry>,
    /// The latest arrival among the live tickets seen (others' only), if the queue was read.
    pub(super) last_arrival: Option<u64>,
    /// The live ticket just before ours, as far as we know.
    pub(super) predecessor: Option<Predecessor>,
}
