//! Who decides what happens next: replaying a recorded path (for DFS and reproduction) or
//! random search with priorities (PCT) or weighted uniform choices.

use super::rng::Rng;

/// How a network (or WASI) filesystem may misreport an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A rename or create_dir that succeeded reports failure (`NotFound`, `AlreadyExists`),
    /// as when an RPC whose first try succeeded is retried.
    Retried,
    /// A listing that overlapped a rename in the directory shows both the old and the new
    /// name.
    ListingShowsBoth,
    /// A listing that overlapped a rename in the directory shows neither name.
    ListingShowsNeither,
}

/// One thing the scheduler can do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Perform `actor`'s pending operation, possibly misreported.
    Run {
        /// Which actor.
        actor: usize,
        /// The fault to inject, if any.
        fault: Option<Fault>,
    },
    /// Freeze `actor` (the one that ran last) for the scenario's pause length while the
    /// others go on: a process stopped, swapped out or stuck in a long GC pause.
    Pause {
        /// Which actor.
        actor: usize,
    },
    /// Crash `actor` before its pending operation.
    Crash {
        /// Which actor.
        actor: usize,
    },
    /// Advance virtual time to the next sleeper's wake-up.
    Tick {
        /// The new time.
        to: i64,
    },
    /// Stop everyone while virtual time jumps.
    Jump {
        /// The new time.
        to: i64,
    },
    /// End `actor`'s `sleep_until_changed` now, though nothing changed.
    Spurious {
        /// Which actor.
        actor: usize,
    },
    /// Lose the wake-up of `actor`'s `sleep_until_changed`: it sleeps its whole time.
    Lose {
        /// Which actor.
        actor: usize,
    },
}

/// A decision to make.
pub struct Decision<'a> {
    /// How many decisions came before this one.
    pub index: usize,
    /// How many steps ran before it.
    pub step: u64,
    /// The actor that ran last, if it is still around.
    pub current: Option<usize>,
    /// The options; the first is the default.
    pub options: &'a [Choice],
}

/// Picks one of the options at every decision.
pub trait Strategy: Send {
    /// The index of the option to take.
    fn choose(&mut self, decision: &Decision<'_>) -> usize;
}

/// Follow a recorded path of option indices, then always take the default.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    path: Vec<usize>,
}

impl Replay {
    /// Replay `path`.
    pub fn new(path: Vec<usize>) -> Self {
        Replay { path }
    }
}

impl Strategy for Replay {
    fn choose(&mut self, decision: &Decision<'_>) -> usize {
        self.path.get(decision.index).copied().unwrap_or(0)
    }
}

/// Random search. With `pct`, actors run by priority and the running actor drops to the
/// lowest priority at a few random steps (probabilistic concurrency testing: finds bugs that
/// need a few well-placed preemptions with a known probability); otherwise options are drawn
/// with weights. Either way it sometimes pauses, crashes, or injects faults.
pub struct Random {
    rng: Rng,
    pct: bool,
    priorities: Vec<u64>,
    change_points: Vec<u64>,
    next_low: u64,
    changed_at: Option<u64>,
}

impl Random {
    /// A strategy drawn from `seed`, for schedules of about `expected_steps` steps.
    pub fn new(seed: u64, expected_steps: u64) -> Self {
        let mut rng = Rng::new(seed);
        let pct = seed.is_multiple_of(2);
        let depth = 1 + rng.below(3);
        let change_points = (0..depth)
            .map(|_| rng.below(expected_steps.max(1)))
            .collect();
        Random {
            rng,
            pct,
            priorities: Vec::new(),
            change_points,
            next_low: depth,
            changed_at: None,
        }
    }

    fn priority(&mut self, actor: usize) -> u64 {
        while self.priorities.len() <= actor {
            let p = 1_000 + self.rng.below(1_000_000);
            self.priorities.push(p);
        }
        self.priorities[actor]
    }

    fn find(options: &[Choice], want: impl Fn(&Choice) -> bool) -> Option<usize> {
        options.iter().position(want)
    }

    fn pct(&mut self, d: &Decision<'_>) -> usize {
        if self.change_points.contains(&d.step) && self.changed_at != Some(d.step) {
            self.changed_at = Some(d.step);
            if let Some(c) = d.current {
                self.priority(c);
                self.priorities[c] = self.next_low;
                self.next_low = self.next_low.saturating_sub(1);
            }
        }
        let tick = Self::find(d.options, |c| matches!(c, Choice::Tick { .. }));
        let jump = Self::find(d.options, |c| matches!(c, Choice::Jump { .. }));
        if let Some(i) = tick.filter(|_| self.rng.chance(30)) {
            return i;
        }
        if let Some(i) = jump.filter(|_| self.rng.chance(5)) {
            return i;
        }
        let wake = Self::find(d.options, |c| {
            matches!(c, Choice::Spurious { .. } | Choice::Lose { .. })
        });
        if let Some(i) = wake.filter(|_| self.rng.chance(20)) {
            return i;
        }
        let runs: Vec<(usize, usize)> = d
            .options
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Choice::Run { actor, fault: None } => Some((i, *actor)),
                _ => None,
            })
            .collect();
        let Some(&(best, actor)) = runs.iter().max_by_key(|&&(_, a)| (self.priority(a), a)) else {
            return 0;
        };
        let pause = Self::find(d.options, |c| matches!(c, Choice::Pause { .. }));
        if let Some(i) = pause.filter(|_| self.rng.chance(10)) {
            return i;
        }
        let crash = Self::find(d.options, |c| matches!(c, Choice::Crash { .. }));
        if let Some(i) = crash.filter(|_| self.rng.chance(15)) {
            return i;
        }
        let faults: Vec<usize> = d
            .options
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, Choice::Run { actor: a, fault: Some(_) } if *a == actor))
            .map(|(i, _)| i)
            .collect();
        if !faults.is_empty() && self.rng.chance(100) {
            return faults[self.rng.below(faults.len() as u64) as usize];
        }
        best
    }

    fn weighted(&mut self, d: &Decision<'_>) -> usize {
        let weight = |c: &Choice| match c {
            Choice::Run { fault: None, .. } => 40,
            Choice::Run { fault: Some(_), .. } => 4,
            Choice::Crash { .. } | Choice::Pause { .. } => 1,
            Choice::Tick { .. } => 3,
            Choice::Jump { .. } | Choice::Spurious { .. } | Choice::Lose { .. } => 1,
        };
        let total: u64 = d.options.iter().map(weight).sum();
        let mut pick = self.rng.below(total);
        for (i, c) in d.options.iter().enumerate() {
            if pick < weight(c) {
                return i;
            }
            pick -= weight(c);
        }
        0
    }
}

impl Strategy for Random {
    fn choose(&mut self, decision: &Decision<'_>) -> usize {
        if self.pct {
            self.pct(decision)
        } else {
            self.weighted(decision)
        }
    }
}
