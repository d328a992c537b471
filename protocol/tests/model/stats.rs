//! Counters of what the exploration exercised, so a summary shows the checker did not pass
//! by never reaching the interesting cases.

use std::fmt;
use std::ops::AddAssign;

/// Event counts, per schedule or summed over many.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Schedules run.
    pub schedules: u64,
    /// Scheduling points executed.
    pub steps: u64,
    /// Longest schedule, in steps.
    pub longest: u64,
    /// Successful acquisitions.
    pub acquisitions: u64,
    /// Acquisitions that took an expired lock over.
    pub takeovers: u64,
    /// Successful refreshes.
    pub refreshes: u64,
    /// Successful releases.
    pub releases: u64,
    /// Holders told `Compromised` after they really lost the lock.
    pub compromised: u64,
    /// `Busy` outcomes.
    pub busy: u64,
    /// Actors crashed by the scheduler.
    pub crashes: u64,
    /// Single actors frozen while the others went on.
    pub pauses: u64,
    /// Global pauses (time jumped with everyone stopped).
    pub jumps: u64,
    /// Operations that succeeded but were reported as failed.
    pub faults: u64,
    /// Listings that showed a concurrent rename's old and new name, or neither.
    pub torn_listings: u64,
    /// Lock calls that returned an error because of such a fault.
    pub fault_errors: u64,
    /// `Compromised` reported although the lock was not lost (a retried release that had
    /// succeeded, after which somebody else took the lock).
    pub false_compromised: u64,
    /// Staging and probe directories left behind in the lock directory at the end.
    pub leaked_staging: u64,
    /// Tickets of crashed waiters left in the queue directory at the end.
    pub leaked_tickets: u64,
    /// Tickets taken (created in the queue directory).
    pub tickets: u64,
    /// Held entries marked by a waiter.
    pub marks: u64,
    /// Acquisitions of an unmarked free lock by an actor while another actor's ticket was in
    /// the queue: a waiter passed over (bounded fairness allows it until the bound).
    pub overtakes: u64,
    /// Acquisitions of an unmarked free lock right after the same actor failed to rename the
    /// marked name of that release (the first in line, woken, guessing the name a release
    /// left: a holder within its bound releases unmarked).
    pub second_guesses: u64,
    /// Tickets renewed (renamed to a later expiry).
    pub renewals: u64,
    /// Tickets just made that moved behind a ticket made at the same moment (renamed to a
    /// later arrival).
    pub moves: u64,
    /// Renewed tickets found by another actor with one look at the name (a waiter behind,
    /// following its predecessor's renewal without reading the queue).
    pub renewals_followed: u64,
    /// Waits begun right after a `try_acquire` of the same actor found the lock busy (the
    /// wait's first step takes that try's look).
    pub waits_after_a_try: u64,
    /// Acquisitions refused because the lock had handed out its last fence.
    pub exhausted: u64,
    /// Sleeps until a change that ended before their time (woken by the change, or for
    /// nothing).
    pub early_wakeups: u64,
    /// Wake-ups the scheduler lost.
    pub lost_wakeups: u64,
    /// Wake-ups for nothing the scheduler caused.
    pub spurious_wakeups: u64,
}

impl AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.schedules += o.schedules;
        self.steps += o.steps;
        self.longest = self.longest.max(o.longest);
        self.acquisitions += o.acquisitions;
        self.takeovers += o.takeovers;
        self.refreshes += o.refreshes;
        self.releases += o.releases;
        self.compromised += o.compromised;
        self.busy += o.busy;
        self.crashes += o.crashes;
        self.pauses += o.pauses;
        self.jumps += o.jumps;
        self.faults += o.faults;
        self.torn_listings += o.torn_listings;
        self.fault_errors += o.fault_errors;
        self.false_compromised += o.false_compromised;
        self.leaked_staging += o.leaked_staging;
        self.leaked_tickets += o.leaked_tickets;
        self.tickets += o.tickets;
        self.marks += o.marks;
        self.overtakes += o.overtakes;
        self.second_guesses += o.second_guesses;
        self.renewals += o.renewals;
        self.moves += o.moves;
        self.renewals_followed += o.renewals_followed;
        self.waits_after_a_try += o.waits_after_a_try;
        self.exhausted += o.exhausted;
        self.early_wakeups += o.early_wakeups;
        self.lost_wakeups += o.lost_wakeups;
        self.spurious_wakeups += o.spurious_wakeups;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} schedules, {} steps (longest {}); {} acquisitions ({} takeovers), {} refreshes, \
             {} releases, {} busy, {} compromised holders told; {} tickets, {} marks, {} overtakes, {} grants on a second guess; {} tickets moved behind; {} renewals ({} followed by a look at the name); {} waits after a busy try; {} refused for exhausted fences; {} crashes, {} pauses, \
             {} global pauses; injected: {} retried RPCs, {} torn listings ({} made a call \
             fail, {} false `Compromised`); {} staging/probe dirs and {} crashed waiters' tickets left behind; wake-ups: {} early, {} lost, {} for nothing",
            self.schedules,
            self.steps,
            self.longest,
            self.acquisitions,
            self.takeovers,
            self.refreshes,
            self.releases,
            self.busy,
            self.compromised,
            self.tickets,
            self.marks,
            self.overtakes,
            self.second_guesses,
            self.moves,
            self.renewals,
            self.renewals_followed,
            self.waits_after_a_try,
            self.exhausted,
            self.crashes,
            self.pauses,
            self.jumps,
            self.faults,
            self.torn_listings,
            self.fault_errors,
            self.false_compromised,
            self.leaked_staging,
            self.leaked_tickets,
            self.early_wakeups,
            self.lost_wakeups,
            self.spurious_wakeups
        )
    }
}
