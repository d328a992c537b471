//! The invariants, checked as the schedule runs.
//!
//! 1. **Mutual exclusion**: an actor *believes* it holds the lock from a successful acquire
//!    (or refresh) until the earliest of its deadline by its own clock and the start of its
//!    release or a failed refresh. No two actors' beliefs may overlap in virtual time. A
//!    crashed actor keeps its belief until its deadline: nobody can tell a dead holder from a
//!    paused one.
//! 2. **A lost holder learns it**: once another actor renamed or removed a holder's entry,
//!    that holder's next refresh or release must report `Compromised` with its own fence.
//! 3. **Liveness and a sound lockdir**: the lockdir never holds more than one state entry,
//!    and nothing but that and waiters' tickets; when all actors have stopped it holds exactly
//!    one state entry and no ticket of a surviving actor, no surviving actor left it held,
//!    and a fresh waiter with enough patience gets the lock.
//!    A blocking acquire gives up only after its patience ran out; no schedule runs forever.
//! 4. **Fencing**: every acquisition, as granted and as written to the lockdir, has a fence
//!    greater than every one before it.
//!
//!
//! In scenarios that ask for it ([`Checker::prompt_within_ms`]), the final probe must also
//! take over a dead holder's entry promptly: within a bound of when that entry was written
//! and of its deadline, whoever marked it meanwhile (a mark renames the entry and so moves
//! the lockdir's mtime, which the takeover rule reads).
//!
//! Errors from lock calls are violations too, unless an injected fault caused them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use lockbydir_protocol::entry::{Entry, Ticket};
use lockbydir_protocol::{Error, Grant, Holder, LockName, Released};

use super::op::Op;
use super::scenario::LOCK_NAME;
use super::stats::Stats;
use super::strategy::Fault;
use super::world::World;

/// Virtual time 0, in ms since the Unix epoch: clocks read `T0 + t + offset`.
pub const T0: i64 = 1_700_000_000_000;

/// The token an actor's `n`-th random number becomes: the top byte names the actor, so the
/// checker knows whose entry a name is.
pub fn token_for(actor: usize, random: u64) -> u64 {
    ((actor as u64 + 1) << 56) | (random >> 8)
}

/// The actor that made `token`.
pub fn token_owner(token: u64) -> Option<usize> {
    ((token >> 56) as usize).checked_sub(1)
}

/// Which rule was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// 1: two actors believed they held the lock at the same time.
    MutualExclusion,
    /// 2: a holder that lost the lock was not told so.
    LostHolderLearns,
    /// 3: deadlock, livelock, a broken lockdir, or a waiter that gave up too early.
    Liveness,
    /// 4: a fence did not grow.
    Fencing,
    /// A lock call failed without an injected fault to explain it.
    UnexpectedError,
    /// The protocol (or the harness) panicked.
    Panic,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::MutualExclusion => "invariant 1, mutual exclusion",
            Invariant::LostHolderLearns => "invariant 2, a holder that lost the lock learns it",
            Invariant::Liveness => "invariant 3, liveness / sound lockdir",
            Invariant::Fencing => "invariant 4, fences grow",
            Invariant::UnexpectedError => "unexpected error",
            Invariant::Panic => "panic",
        })
    }
}

/// A broken rule and the details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which rule.
    pub invariant: Invariant,
    /// What exactly happened.
    pub message: String,
}

impl Violation {
    /// A violation of `invariant`.
    pub fn new(invariant: Invariant, message: impl Into<String>) -> Self {
        Violation {
            invariant,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.invariant, self.message)
    }
}

type Check = Result<(), Violation>;

/// What an actor believes it holds.
#[derive(Clone, Debug)]
struct Belief {
    fence: u64,
    token: u64,
    /// Last virtual time at which its own clock is still within the deadline.
    valid_until: i64,
    /// False once it started releasing or a refresh failed.
    active: bool,
}

/// The invariants' bookkeeping for one schedule.
#[derive(Debug)]
pub struct Checker {
    labels: Vec<String>,
    offsets: Vec<i64>,
    lockdir: String,
    beliefs: Vec<Option<Belief>>,
    /// Acquisitions (token, fence) whose entry somebody else renamed or removed. An
    /// acquisition is its token and fence: a waiter's acquisition carries its ticket's
    /// token, and a rename whose success was never reported (a retried one reported
    /// `NotFound`, then the entry taken over before the look) leaves the ticket, and so the
    /// token, for the waiter's next acquisition, under another fence.
    lost: BTreeSet<(u64, u64)>,
    /// Acquisitions an actor believed it held and has not let go of (released, or was told).
    open: BTreeSet<(u64, u64)>,
    /// Every acquisition seen in the lockdir.
    written: BTreeSet<(u64, u64)>,
    max_written_fence: Option<u64>,
    max_granted_fence: Option<u64>,
    /// Per actor: a fault was injected since its current lock call began.
    faulted: Vec<bool>,
    crashed: Vec<bool>,
    /// When each held entry was written (virtual time), by token and deadline: its first
    /// appearance in the lockdir.
    written_at: std::collections::BTreeMap<(u64, u64), i64>,
    /// If set: the final probe's takeover must come within this many ms of the later of its
    /// own start, the entry's write plus its timeout, and the entry's deadline plus twice the
    /// skew (see [`Checker::probe_took_over`]).
    pub prompt_within_ms: Option<i64>,
    /// The lock's `max_clock_skew_ms`.
    pub skew_ms: i64,
    /// What happened, for the summary.
    pub stats: Stats,
    /// Per actor: the free entry its last operation failed to rename, if that was its last
    /// operation (a guess at the name a release leaves).
    failed_guess: Vec<Option<Entry>>,
    /// The names renewed tickets took (path -> ticket).
    renewed: BTreeMap<String, Ticket>,
}

/// `t` as the trace prints it.
fn at(t: i64) -> String {
    format!("t={t:+}")
}

impl Checker {
    /// Bookkeeping for actors with these labels and clock offsets.
    pub fn new(labels: Vec<String>, offsets: Vec<i64>) -> Self {
        let n = labels.len();
        Checker {
            labels,
            offsets,
            lockdir: LockName::new(LOCK_NAME).unwrap().lockdir(),
            beliefs: vec![None; n],
            lost: BTreeSet::new(),
            open: BTreeSet::new(),
            written: BTreeSet::new(),
            max_written_fence: None,
            max_granted_fence: None,
            faulted: vec![false; n],
            crashed: vec![false; n],
            written_at: std::collections::BTreeMap::new(),
            prompt_within_ms: None,
            skew_ms: 0,
            stats: Stats::default(),
            failed_guess: vec![None; n],
            renewed: BTreeMap::new(),
        }
    }

    /// Add an actor (the final probe).
    pub fn add_actor(&mut self, label: String, offset: i64) {
        self.labels.push(label);
        self.offsets.push(offset);
        self.beliefs.push(None);
        self.faulted.push(false);
        self.crashed.push(false);
        self.failed_guess.push(None);
    }

    /// `actor` made `op`, which succeeded or not (`done`; for a `stat`, found it): remember a
    /// failed rename of a free entry until the actor's next change or sleep, for
    /// [`Stats::second_guesses`] (a failed rename is followed by a look whether a retried
    /// rename did succeed), and count a renewed ticket found by another actor's `stat`, for
    /// [`Stats::renewals_followed`]. Call after [`Checker::fs_effect`].
    pub fn op_done(&mut self, actor: usize, op: &Op, done: bool) {
        if let Op::Modified(path) = op
            && done
            && let Some(ticket) = self.renewed.get(path)
            && token_owner(ticket.token) != Some(actor)
        {
            self.stats.renewals_followed += 1;
        }
        match op {
            Op::Rename(from, _) if !done => {
                self.failed_guess[actor] = self
                    .entry_at(from)
                    .filter(|e| matches!(e, Entry::Free { .. }));
            }
            Op::ReadDir(_) | Op::Modified(_) | Op::NowMs | Op::MonotonicMs => {}
            _ => self.failed_guess[actor] = None,
        }
    }

    fn name(&self, actor: usize) -> &str {
        &self.labels[actor]
    }

    /// The ticket a path inside the queue directory stands for.
    fn ticket_at(&self, path: &str) -> Option<Ticket> {
        let (dir, name) = path.rsplit_once('/')?;
        (dir == format!("{LOCK_NAME}.queue"))
            .then(|| Ticket::parse(name))
            .flatten()
    }

    /// The entry a path inside the lockdir stands for.
    fn entry_at(&self, path: &str) -> Option<Entry> {
        let (dir, name) = path.rsplit_once('/')?;
        (dir == self.lockdir).then(|| Entry::parse(name)).flatten()
    }

    /// A mutating filesystem operation by `actor` succeeded (whatever it was reported as):
    /// note whose acquisition it ended, and check the lockdir and the fences it wrote.
    pub fn fs_effect(&mut self, actor: usize, t: i64, op: &Op, world: &World) -> Check {
        if let Op::Rename(from, to) = op
            && let (Some(old), Some(new)) = (self.ticket_at(from), self.ticket_at(to))
            && old.token == new.token
        {
            // A ticket just made moving behind one made at the same moment, or a renewal.
            if old.arrival_ms != new.arrival_ms {
                self.stats.moves += 1;
            } else {
                self.stats.renewals += 1;
                self.renewed.insert(to.clone(), new);
            }
        }
        let gone = match op {
            // A waiter marking the entry (`held` -> `held+`, same acquisition) takes nothing.
            Op::Rename(from, to) if from != to => match (self.entry_at(from), self.entry_at(to)) {
                (Some(Entry::Held(a)), Some(Entry::Held(b))) if a.token == b.token => {
                    if b.waiters && !a.waiters {
                        self.stats.marks += 1;
                    }
                    None
                }
                (
                    Some(Entry::Free {
                        waiters: false,
                        fence,
                    }),
                    Some(Entry::Held(_)),
                ) => {
                    let passed = self
                        .tickets(world)
                        .iter()
                        .any(|t| token_owner(t.token) != Some(actor));
                    self.stats.overtakes += u64::from(passed);
                    // Right after failing to rename the marked name of the same release.
                    let guessed = matches!(
                        self.failed_guess[actor],
                        Some(Entry::Free { waiters: true, fence: f }) if f == fence
                    );
                    self.stats.second_guesses += u64::from(guessed);
                    None
                }
                (from, _) => from,
            },
            Op::CreateDir(path) if path.starts_with(&format!("{LOCK_NAME}.queue/")) => {
                self.stats.tickets += 1;
                None
            }
            Op::RemoveDir(path) => self.entry_at(path),
            _ => None,
        };
        if let Some(Entry::Held(h)) = gone
            && token_owner(h.token) != Some(actor)
        {
            self.lost.insert((h.token, h.fence));
        }
        self.check_lockdir(world, false)?;
        for name in world.children(&self.lockdir).unwrap_or_default() {
            let Some(entry) = Entry::parse(&name) else {
                continue;
            };
            if let Entry::Held(h) = &entry {
                self.written_at.entry((h.token, h.deadline_ms)).or_insert(t);
            }
            if let Entry::Held(h) = &entry
                && self.written.insert((h.token, h.fence))
                && self.max_written_fence.is_some_and(|m| h.fence <= m)
            {
                return Err(Violation::new(
                    Invariant::Fencing,
                    format!(
                        "{} wrote {name} with fence {}, but fence {} was written before",
                        self.name(actor),
                        h.fence,
                        self.max_written_fence.unwrap()
                    ),
                ));
            }
            let fence = entry.fence();
            self.max_written_fence = Some(self.max_written_fence.map_or(fence, |m| m.max(fence)));
        }
        Ok(())
    }

    /// The lockdir, if it exists, holds at most one entry (exactly one if `at_rest`), which
    /// is a state entry and an empty directory.
    pub fn check_lockdir(&self, world: &World, at_rest: bool) -> Check {
        let Some(names) = world.children(&self.lockdir) else {
            return if at_rest && !self.written.is_empty() {
                Err(Violation::new(
                    Invariant::Liveness,
                    format!("{} disappeared after the lock was taken", self.lockdir),
                ))
            } else {
                Ok(())
            };
        };
        let broken = |why: String| {
            Err(Violation::new(
                Invariant::Liveness,
                format!("{} is broken: {why}", self.lockdir),
            ))
        };
        if names.len() > 1 || (at_rest && names.len() != 1) {
            return broken(format!("{} entries [{}]", names.len(), names.join(", ")));
        }
        for name in &names {
            if Entry::parse(name).is_none() {
                return broken(format!("{name} is not a state entry"));
            }
            let inside = world.children(&format!("{}/{name}", self.lockdir));
            if inside.as_ref().is_some_and(|c| !c.is_empty()) {
                return broken(format!("{name} is not empty: {inside:?}"));
            }
        }
        Ok(())
    }

    /// The current state entry, if exactly one.
    pub fn state(&self, world: &World) -> Option<Entry> {
        let mut states = world
            .children(&self.lockdir)?
            .into_iter()
            .filter_map(|n| Entry::parse(&n));
        match (states.next(), states.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The waiters' tickets in the queue directory.
    fn tickets(&self, world: &World) -> Vec<Ticket> {
        world
            .children(&format!("{LOCK_NAME}.queue"))
            .unwrap_or_default()
            .iter()
            .filter_map(|n| Ticket::parse(n))
            .collect()
    }

    /// `actor` starts a lock call.
    pub fn call_begins(&mut self, actor: usize) {
        self.faulted[actor] = false;
    }

    /// An operation of `actor` was misreported.
    pub fn fault_injected(&mut self, actor: usize, fault: Fault) {
        self.faulted[actor] = true;
        match fault {
            Fault::Retried => self.stats.faults += 1,
            Fault::ListingShowsBoth | Fault::ListingShowsNeither => self.stats.torn_listings += 1,
        }
    }

    /// `actor` was crashed. Its belief stands until its deadline.
    pub fn crashed(&mut self, actor: usize) {
        self.crashed[actor] = true;
        self.stats.crashes += 1;
    }

    /// Nobody else may believe at `t`.
    fn exclusive(&self, actor: usize, t: i64, what: &str) -> Check {
        for (other, belief) in self.beliefs.iter().enumerate() {
            let Some(b) = belief else { continue };
            if other == actor || !b.active || t > b.valid_until {
                continue;
            }
            return Err(Violation::new(
                Invariant::MutualExclusion,
                format!(
                    "{} {what} at {}, while {} still believes it holds fence {} until {} \
                     (its deadline {} on its own clock, offset {:+} ms{})",
                    self.name(actor),
                    at(t),
                    self.name(other),
                    b.fence,
                    at(b.valid_until),
                    at(b.valid_until + self.offsets[other]),
                    self.offsets[other],
                    if self.crashed[other] { ", crashed" } else { "" }
                ),
            ));
        }
        Ok(())
    }

    fn believe(&mut self, actor: usize, holder: &Holder) {
        self.beliefs[actor] = Some(Belief {
            fence: holder.fence,
            token: holder.token,
            valid_until: holder.deadline_ms as i64 - T0 - self.offsets[actor],
            active: true,
        });
        self.open.insert((holder.token, holder.fence));
    }

    fn stop_believing(&mut self, actor: usize) -> Option<Belief> {
        let b = self.beliefs[actor].as_mut()?;
        b.active = false;
        Some(b.clone())
    }

    /// `acquire`/`try_acquire` of `actor` returned `Acquired` at `t`; `holder` is what the
    /// handle now records.
    pub fn acquired(&mut self, actor: usize, t: i64, grant: &Grant, holder: &Holder) -> Check {
        self.stats.acquisitions += 1;
        self.stats.takeovers += u64::from(grant.took_over.is_some());
        if let Some(m) = self.max_granted_fence
            && grant.fence <= m
        {
            return Err(Violation::new(
                Invariant::Fencing,
                format!(
                    "{} was granted fence {} after fence {m} had been granted",
                    self.name(actor),
                    grant.fence
                ),
            ));
        }
        self.max_granted_fence = Some(grant.fence);
        self.exclusive(actor, t, &format!("acquired fence {}", grant.fence))?;
        self.believe(actor, holder);
        Ok(())
    }

    /// The final probe, which started at `start`, took over `from` at `t`: if this scenario
    /// asks for it, that must not be late. Rule (a) lets the probe in once its clock (the
    /// slowest) is past the deadline plus the skew, at most twice the skew after the
    /// deadline in virtual time; rule (b) once the filesystem's clock is past the entry's
    /// write plus its timeout and margin. Anything later, beyond a few polls, means
    /// something else held the takeover back: a mark that moved the lockdir's mtime.
    pub fn probe_took_over(&self, actor: usize, t: i64, start: i64, from: &Holder) -> Check {
        let Some(within) = self.prompt_within_ms else {
            return Ok(());
        };
        let Some(&written) = self.written_at.get(&(from.token, from.deadline_ms)) else {
            return Ok(());
        };
        let writer = token_owner(from.token).map_or(0, |o| self.offsets[o]);
        let deadline = from.deadline_ms as i64 - T0 - writer;
        let due = start
            .max(written + from.timeout_ms as i64)
            .max(deadline + 2 * self.skew_ms);
        if t > due + within {
            return Err(Violation::new(
                Invariant::Liveness,
                format!(
                    "{} took over fence {} only at {}, {} ms after it was due at {} (written at \
                     {}, deadline {}{}): something delayed the takeover",
                    self.name(actor),
                    from.fence,
                    at(t),
                    t - due,
                    at(due),
                    at(written),
                    at(deadline),
                    if from.waiters { ", marked" } else { "" }
                ),
            ));
        }
        Ok(())
    }

    /// A blocking acquire gave up after `waited` ms of its `patience` (0: `try_acquire`).
    pub fn busy(&mut self, actor: usize, waited: i64, patience: u64) -> Check {
        self.stats.busy += 1;
        if patience > 0 && waited < patience as i64 {
            return Err(Violation::new(
                Invariant::Liveness,
                format!(
                    "{} gave up after {waited} ms although its patience is {patience} ms",
                    self.name(actor)
                ),
            ));
        }
        Ok(())
    }

    /// Whether the lock has handed out its last fence: from then on it must refuse to grant.
    fn fences_exhausted(&self) -> bool {
        self.max_written_fence == Some(u64::MAX)
    }

    /// A call failed; fine only if a fault was injected into it, or if it was an acquire
    /// refused because the lock has handed out its last fence.
    pub fn failed(&mut self, actor: usize, call: &str, err: &Error) -> Check {
        if self.faulted[actor] {
            self.stats.fault_errors += 1;
            return Ok(());
        }
        if let Error::FencesExhausted { path } = err
            && self.fences_exhausted()
            && *path == self.lockdir
        {
            self.stats.exhausted += 1;
            return Ok(());
        }
        Err(Violation::new(
            Invariant::UnexpectedError,
            format!("{}'s {call} failed: {err}", self.name(actor)),
        ))
    }

    /// Check a refresh's or release's `Err` against what really happened.
    fn told(&mut self, actor: usize, call: &str, belief: &Belief, err: &Error) -> Check {
        self.open.remove(&(belief.token, belief.fence));
        match err {
            Error::Compromised { fence, .. } if *fence != belief.fence => Err(Violation::new(
                Invariant::LostHolderLearns,
                format!(
                    "{}'s {call} reported fence {fence} compromised, but it held fence {}",
                    self.name(actor),
                    belief.fence
                ),
            )),
            Error::Compromised { .. } if self.lost.contains(&(belief.token, belief.fence)) => {
                self.stats.compromised += 1;
                Ok(())
            }
            Error::Compromised { .. } if self.faulted[actor] => {
                self.stats.false_compromised += 1;
                Ok(())
            }
            Error::Compromised { .. } => Err(Violation::new(
                Invariant::LostHolderLearns,
                format!(
                    "{}'s {call} reported Compromised, but nobody took fence {} from it",
                    self.name(actor),
                    belief.fence
                ),
            )),
            other => self.failed(actor, call, other),
        }
    }

    fn not_lost(&self, actor: usize, call: &str, belief: &Belief) -> Check {
        if self.lost.contains(&(belief.token, belief.fence)) {
            return Err(Violation::new(
                Invariant::LostHolderLearns,
                format!(
                    "{}'s {call} succeeded, but its fence {} had been taken from it: it was \
                     not told it lost the lock",
                    self.name(actor),
                    belief.fence
                ),
            ));
        }
        Ok(())
    }

    /// `refresh` of `actor` returned at `t`; `holder` is what the handle records now.
    pub fn refreshed(
        &mut self,
        actor: usize,
        t: i64,
        result: &Result<u64, Error>,
        holder: Option<&Holder>,
    ) -> Check {
        let Some(belief) = self.stop_believing(actor) else {
            return Ok(());
        };
        match (result, holder) {
            (Ok(_), Some(h)) => {
                self.stats.refreshes += 1;
                self.not_lost(actor, "refresh", &belief)?;
                self.exclusive(actor, t, &format!("refreshed fence {}", belief.fence))?;
                self.believe(actor, h);
                Ok(())
            }
            (Ok(_), None) => Err(Violation::new(
                Invariant::Panic,
                "refresh succeeded but the handle holds nothing",
            )),
            (Err(e), _) => self.told(actor, "refresh", &belief, e),
        }
    }

    /// `actor` is about to call `release`: from now on it acts as if it held nothing.
    pub fn releasing(&mut self, actor: usize) {
        self.stop_believing(actor);
    }

    /// `release` of `actor` returned.
    pub fn released(&mut self, actor: usize, result: &Result<Released, Error>) -> Check {
        let Some(belief) = self.beliefs[actor].clone() else {
            return Ok(());
        };
        match result {
            Ok(_) => {
                self.stats.releases += 1;
                self.open.remove(&(belief.token, belief.fence));
                self.not_lost(actor, "release", &belief)
            }
            Err(e) => self.told(actor, "release", &belief, e),
        }
    }

    /// Everyone stopped: exactly one entry, not held by a surviving actor that believed it.
    pub fn at_rest(&mut self, world: &World) -> Check {
        self.check_lockdir(world, true)?;
        self.stats.leaked_staging += world
            .children("")
            .unwrap_or_default()
            .iter()
            .filter(|n| n.ends_with(".staging") || n.ends_with(".probe"))
            .count() as u64;
        for ticket in self.tickets(world) {
            if let Some(owner) = token_owner(ticket.token)
                && !self.crashed[owner]
            {
                return Err(Violation::new(
                    Invariant::Liveness,
                    format!(
                        "{} stopped but left its ticket {} in the queue",
                        self.name(owner),
                        ticket.encode()
                    ),
                ));
            }
            self.stats.leaked_tickets += 1;
        }
        if let Some(Entry::Held(h)) = self.state(world)
            && let Some(owner) = token_owner(h.token)
            && !self.crashed[owner]
            && self.open.contains(&(h.token, h.fence))
        {
            return Err(Violation::new(
                Invariant::Liveness,
                format!(
                    "{} stopped but left the lock held (fence {})",
                    self.name(owner),
                    h.fence
                ),
            ));
        }
        Ok(())
    }

    /// After the probe took and released the lock: the lockdir is `free.<last fence>`, marked
    /// or not (a waiter first in line takes the lock marked without reading the queue again;
    /// a mark with nobody queued holds nobody up: the next acquire reads an empty queue).
    pub fn after_probe(&self, world: &World) -> Check {
        self.check_lockdir(world, true)?;
        let fence = self.max_granted_fence.unwrap_or(0);
        match self.state(world) {
            Some(Entry::Free { fence: f, .. }) if f == fence => Ok(()),
            // The probe was refused (its `failed` allowed that only for exhausted fences): the
            // state stays whatever holds the last fence.
            Some(state) if state.fence() == u64::MAX && self.fences_exhausted() => Ok(()),
            other => Err(Violation::new(
                Invariant::Liveness,
                format!(
                    "after the probe released, the state is {:?}, not free.{fence} ({} tickets queued)",
                    other.map(|e| e.encode()),
                    self.tickets(world).len()
                ),
            )),
        }
    }
}
