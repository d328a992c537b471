//! The queue of waiters: tickets taken, renewed and withdrawn, and who is next.
//!
//! # Fairness: the queue
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
//! A ticket's place is its arrival, chosen from the look before it; two waiters that looked
//! before either's ticket was made choose alike, so each reads the queue again right after
//! making its ticket and moves it behind any ticket that sorts after it
//! (`Lock::take_last_place`). Then every waiter knows all who are ahead of it, which is what
//! lets the one behind a waiter that was served know from the state that it is next.
//!
//! Tickets and marks only decide *who tries*; who *gets* the lock is still decided by the
//! rename (see `transitions.rs`), so the queue cannot break mutual exclusion, only delay: a
//! ticket whose owner crashed counts until it expires ([`TICKET_LIFETIME_MS`] after its last
//! renewal, plus the skew margin, and never longer than that after a waiter first saw it, by
//! that waiter's own clock, whatever expiry the ticket claims: see `Lock::place_among`), and
//! someone who arrives between a waiter's ticket and its mark can get in first. Tickets are
//! not in the lockdir, so they do not touch its mtime (the takeover rule reads it); a waiter
//! does not mark an entry that is past its deadline, for the same reason.
//!
//! A waiter takes its turn by a rename of the state entry and only then withdraws its ticket
//! (see `Lock::claimed`); a handle dropped while it waits withdraws its ticket at once. Either
//! way the ticket's name goes, which is what the waiter behind it watches when its
//! environment reports changes (see `pacing.rs`). The acquisition carries the ticket's token,
//! so the waiter behind, woken by the ticket's removal, reads the state (one listing of the
//! lockdir, which holds one entry) and, finding the one before it holding, knows it is first
//! without reading the queue. Only a predecessor that gave up, renewed its ticket or already
//! let go makes it read the queue in full.
//!
//! # Bounded fairness
//!
//! Under [`crate::lock::Fairness::Bounded`] waiters queue the same way, but only the first in
//! line marks the holder's entry, and the holder decides what a marked release does: for
//! [`crate::lock::FAIRNESS_BOUND_US`] of its own time after its turn began (it took the lock
//! marked, or first released an entry marked while it held it), it releases unmarked (`free.k`) and takes `free.k` back with one rename, marked
//! again; its first release after that is `free+.k`, which only the first in line may take,
//! and it queues behind the others. Anyone who finds `free.k` may take it meanwhile (the
//! first in line, woken by the release, tries too: the rename decides). The holder decides
//! because it is the one running: a bound the first in line had to enforce would stretch by
//! however long that waiter waits for a CPU. The line itself stays first come, first served:
//! waiters behind the first never take the lock, and since acquisitions by others do not
//! move the line, a waiter's place is judged by its last full look or by its predecessor
//! seen holding, never by the fences.

use std::collections::BTreeMap;

use crate::entry::Ticket;
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsErrorKind};

use super::directory::{create_own_dir, create_shared_dir, io};
use super::{Fairness, Lock};

/// How long a waiter's ticket counts without being renewed (ms, its owner's clock). A waiter
/// renews it when less than half is left; the ticket of a waiter that crashed stops holding up
/// the queue at most this long (plus the skew margin) after its last renewal.
pub const TICKET_LIFETIME_MS: u64 = 2_000;

/// How many times a ticket just made moves behind tickets made at the same moment (see
/// `Lock::take_last_place`) before it stays where it is.
const MAX_MOVES: usize = 8;

impl<F: Fs, E: Env> Lock<F, E> {
    /// Take a ticket (behind every ticket we saw, the latest of which arrived at
    /// `last_arrival`), or renew ours when half its lifetime is gone. A ticket made (not one
    /// renewed) comes with the queue as read after it: our place in the line.
    pub(super) fn join_queue(&mut self, last_arrival: Option<u64>) -> Result<Option<Queue>, Error> {
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
                return self.take_last_place(now).map(Some);
            }
            Some(t) if self.ticket_withdrawn => {
                let back = Ticket { expires_ms, ..t };
                self.create_ticket(&self.ticket_path(&back))?;
                self.ticket = Some(back);
                self.ticket_withdrawn = false;
                return self.take_last_place(now).map(Some);
            }
            Some(t) if t.expires_ms.saturating_sub(now) < TICKET_LIFETIME_MS / 2 => Ticket {
                expires_ms: renewed_expiry(t.expires_ms, now),
                ..t
            },
            Some(_) => return Ok(None),
        };
        self.rename_ticket(renewed)?;
        Ok(None)
    }

    /// Rename our ticket to `to` (a renewal, or a move behind others), and keep it as ours.
    fn rename_ticket(&mut self, to: Ticket) -> Result<(), Error> {
        let old = self.ticket_path(&self.ticket.expect("renaming a ticket we have"));
        let new = self.ticket_path(&to);
        match self.fs.rename(&old, &new) {
            Ok(()) => {}
            // Someone removed it as expired (we were slow, or our clock is behind), or a
            // retried rename did succeed: either way it goes where it was going.
            Err(e) if e.kind == FsErrorKind::NotFound => {
                if !self.fs.exists(&new).unwrap_or(false) {
                    self.create_ticket(&new)?;
                }
            }
            Err(source) => return Err(io("rename", format!("{old} -> {new}"), source)),
        }
        self.ticket = Some(to);
        Ok(())
    }

    /// Our ticket was just made: read the queue again, and while a ticket sorts after ours,
    /// move ours behind the last one there. Returns our place in the queue as read last.
    ///
    /// A ticket sorts by the arrival its maker chose from its look, so two waiters that
    /// looked before either's ticket was there choose alike, and the one whose look missed
    /// the other's ticket can sort before it unknown to it. Both would count the same waiter
    /// as the one just before them, and once it was served both would believe themselves
    /// first and race for the lock (`tests/fairness.rs`,
    /// `two_waiters_that_join_at_once_behind_the_same_one_know_which_of_them_is_next`).
    /// Made last, a ticket is known to every waiter behind it: whoever joins after this read
    /// sees it in its own read after its ticket, and moves behind it if it sorts before. A
    /// ticket that does not settle in [`MAX_MOVES`] moves (others keep joining at the same
    /// moment) stays where it is: the order of the line, not the lock, is what is at stake.
    fn take_last_place(&mut self, now: u64) -> Result<Queue, Error> {
        for _ in 0..MAX_MOVES {
            let tickets = read_tickets(&self.fs, &self.queue_dir)?;
            let mine = self.ticket.expect("a ticket just made");
            let last = tickets
                .iter()
                .filter(|t| t.token != mine.token)
                .copied()
                .reduce(|a, b| if a.is_before(&b) { b } else { a });
            let Some(last) = last.filter(|last| mine.is_before(last)) else {
                return Ok(self.place_among(&tickets, now));
            };
            self.rename_ticket(Ticket {
                arrival_ms: last.arrival_ms.saturating_add(1),
                ..mine
            })?;
        }
        let tickets = read_tickets(&self.fs, &self.queue_dir)?;
        Ok(self.place_among(&tickets, now))
    }

    /// Give our ticket back (best effort: an expired ticket stops counting anyway).
    pub(super) fn leave_queue(&mut self) {
        self.withdraw_ticket();
        self.ticket = None;
        self.place = None;
        self.last_seen = None;
        self.ticket_withdrawn = false;
        self.after_release = None;
        self.watched_predecessor = None;
    }

    /// How many waiters are still ahead of us, judging by our place at the last full look and
    /// the fence now (each acquisition since serves at most one of them); `None` without a
    /// ticket (or a place on record). Only good for deciding that the queue need not be read
    /// yet: under bounded fairness acquisitions also go to others than waiters.
    pub(super) fn place_by_fences(&self, fence: u64) -> Option<usize> {
        let place = self.place.filter(|_| self.ticket.is_some())?;
        let moved = usize::try_from(fence.saturating_sub(place.fence)).unwrap_or(usize::MAX);
        Some(place.ahead.saturating_sub(moved))
    }

    /// Whether we are first in line, as far as we can tell without reading the queue:
    /// first-come-first-served serves the first waiter at every acquisition while waiters
    /// queue, so the fences count the line down; under bounded fairness others take the lock
    /// without moving the line, so only our place at the last full look counts (or the one
    /// before us seen holding the lock, see `attempt`). Newcomers queue behind what they see,
    /// so a waiter that was first stays first.
    pub(super) fn known_first(&self, fence: u64) -> bool {
        match self.options.fairness {
            Fairness::Fifo => self.place_by_fences(fence) == Some(0),
            Fairness::Bounded => self.ticket.is_some() && self.place.is_some_and(|p| p.ahead == 0),
        }
    }

    /// Remove our ticket's directory, keeping our place on record.
    pub(super) fn withdraw_ticket(&mut self) {
        if let Some(ticket) = self.ticket
            && !self.ticket_withdrawn
        {
            let _ = self.fs.remove_dir(&self.ticket_path(&ticket));
            self.ticket_withdrawn = true;
        }
    }

    pub(super) fn ticket_path(&self, ticket: &Ticket) -> String {
        format!("{}/{}", self.queue_dir, ticket.encode())
    }

    /// Create our ticket, and the queue directory first if nobody has queued for this lock.
    pub(super) fn create_ticket(&self, path: &str) -> Result<(), Error> {
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
    pub(super) fn place_among(&mut self, tickets: &[Ticket], now: u64) -> Queue {
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
                    if queue.predecessor.is_none_or(|p| p.ticket.is_before(ticket)) {
                        queue.predecessor = Some(self.counting(*ticket, now, seen_now, first_seen));
                    }
                } else {
                    queue.behind += 1;
                }
            }
        }
        self.tickets_seen = seen;
        queue
    }

    /// The ticket just before ours as `ticket`, first seen (under that name) at `first_seen`:
    /// it counts until it expires by our wall clock (`now`) or has been the same name too long
    /// by our monotonic one (`seen_now`), whichever comes first.
    fn counting(&self, ticket: Ticket, now: u64, seen_now: u64, first_seen: u64) -> Predecessor {
        let skew = self.options.max_clock_skew_ms;
        let until_expired = ticket
            .expires_ms
            .saturating_add(skew)
            .saturating_add(1)
            .saturating_sub(now);
        let until_stuck = first_seen
            .saturating_add(TICKET_LIFETIME_MS.saturating_add(skew))
            .saturating_add(1);
        Predecessor {
            ticket,
            counts_until_ms: seen_now.saturating_add(until_expired).min(until_stuck),
        }
    }

    /// Whether the one before us, whose ticket we watched, still waits, judged without
    /// reading the queue: its ticket is still the name we watched and still counts, or it
    /// was renamed to the name its renewal gives (see [`renewed_expiry`]; one `stat` each).
    /// `None` when it may have gone (or renewed otherwise): then the queue is read in full.
    pub(super) fn predecessor_still_waiting(
        &mut self,
        watched: &Predecessor,
    ) -> Option<Predecessor> {
        let seen_now = self.env.monotonic_ms();
        // Any error: let the full look find out.
        if self
            .fs
            .exists(&self.ticket_path(&watched.ticket))
            .unwrap_or(false)
        {
            return (seen_now < watched.counts_until_ms).then_some(*watched);
        }
        let renewed = Ticket {
            expires_ms: renewed_on_time(watched.ticket.expires_ms),
            ..watched.ticket
        };
        if !self.fs.exists(&self.ticket_path(&renewed)).unwrap_or(false) {
            return None;
        }
        // A new name: the stuck rule counts from now, and the next full look remembers it.
        let now = self.env.now_ms();
        let predecessor = self.counting(renewed, now, seen_now, seen_now);
        if seen_now >= predecessor.counts_until_ms {
            return None;
        }
        self.tickets_seen.insert(renewed, seen_now);
        Some(predecessor)
    }
}

/// The expiry a renewal at `now` gives a ticket that expires at `expires_ms`: half a lifetime
/// later than before, which a waiter renewing on time (less than half its lifetime left, not
/// yet expired) keeps within one lifetime from now; so the waiter behind, watching the old
/// name, knows the new one without reading the queue. A waiter renewing late (expired by its
/// own clock) takes a full lifetime from now.
fn renewed_expiry(expires_ms: u64, now: u64) -> u64 {
    match expires_ms >= now {
        true => renewed_on_time(expires_ms),
        false => now.saturating_add(TICKET_LIFETIME_MS),
    }
}

/// The expiry a renewal on time gives a ticket that expired at `expires_ms` (see
/// [`renewed_expiry`]): the name the waiter behind looks for when the one it watched went.
fn renewed_on_time(expires_ms: u64) -> u64 {
    expires_ms.saturating_add(TICKET_LIFETIME_MS / 2)
}

/// Where a waiter stood at its last full look at the queue.
#[derive(Clone, Copy)]
pub(super) struct Place {
    /// Live tickets before ours.
    pub(super) ahead: usize,
    /// Live tickets after ours.
    pub(super) behind: usize,
    /// The last fence handed out then.
    pub(super) fence: u64,
    /// The live ticket just before ours then.
    pub(super) predecessor: Option<Predecessor>,
}

/// Live tickets other than ours, before and after ours, the latest arrival among them, and
/// the one just before ours.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) ahead: usize,
    pub(super) behind: usize,
    pub(super) last_arrival: Option<u64>,
    pub(super) predecessor: Option<Predecessor>,
}

/// The live ticket just before ours in the line (the last of all, while we have none): the
/// one a waiter behind others watches, since it goes when its owner takes the lock, gives up
/// or renews it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Predecessor {
    /// Its ticket, as listed.
    pub(super) ticket: Ticket,
    /// When (our monotonic ms) it stops counting unless renewed: its expiry plus the skew
    /// margin by our clock, or [`TICKET_LIFETIME_MS`] plus that margin after we first saw
    /// that name, whichever is first (see [`Lock::place_among`]).
    pub(super) counts_until_ms: u64,
}

/// The tickets in a lock's queue directory (none if it does not exist yet). A listing torn
/// by a concurrent rename can miss or double a ticket: that only affects the order of service.
pub(super) fn read_tickets(fs: &impl Fs, queue_dir: &str) -> Result<Vec<Ticket>, Error> {
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
