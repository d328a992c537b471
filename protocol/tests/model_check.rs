//! Model checking the lock protocol: the real `Lock` code, several actors, an in-memory
//! filesystem, virtual clocks with skew, crashes, pauses and network-filesystem faults,
//! under a deterministic scheduler. See `model/mod.rs` for how it works and
//! `model/checker.rs` for the invariants.
//!
//! Each test prints one summary line to stderr (past the test harness's capture) with how
//! many schedules it explored. `MODEL_CHECK_SCALE=N` multiplies the random search, and
//! `MODEL_CHECK_SEED=<seed>` reruns one random schedule (as printed with a violation).
//!
//! With `--features planted-bugs`, two more tests plant a bug in the real protocol code and
//! require the same search to find a violating schedule, which they print.

mod model;

use std::time::Instant;

use model::checker::Invariant;
use model::dfs::explore_dfs;
use model::explore::{Found, Setup, explore_random, no_setup, scale, summary};
use model::scenario::{ActorSpec, Scenario};
use model::stats::Stats;

/// Timeout of every actor in the exhaustive scenarios (ms).
const TIMEOUT: u64 = 100;
/// Their `max_clock_skew_ms`.
const SKEW: u64 = 20;

/// A holder with the slowest clock allowed (so the waiter's clock runs `SKEW` ahead: the
/// takeover comes as early as the protocol allows), refreshing once, that may crash.
fn holder() -> ActorSpec {
    ActorSpec {
        offset_ms: -((SKEW / 2) as i64),
        refreshes: 1,
        hold_ms: 40,
        may_crash: true,
        ..ActorSpec::new("H", TIMEOUT, 0)
    }
}

/// A blocking waiter with the fastest clock allowed and patience to outlast a crash.
fn waiter(label: &str) -> ActorSpec {
    ActorSpec {
        offset_ms: (SKEW / 2) as i64,
        hold_ms: 20,
        ..ActorSpec::new(label, TIMEOUT, 4 * TIMEOUT)
    }
}

/// The small scenarios searched exhaustively, each with its preemption bound.
fn exhaustive_scenarios() -> Vec<(Scenario, u32)> {
    vec![
        // A holder that may crash at any step or be paused past its deadline, and a waiter.
        (
            Scenario {
                crashes: 1,
                ..Scenario::new(
                    "crash-or-pause-then-takeover",
                    SKEW,
                    vec![holder(), waiter("W")],
                )
            },
            2,
        ),
        // A holder that works past its own deadline (a pause it causes itself), then
        // refreshes and releases; a waiter takes over meanwhile, or not.
        (
            Scenario::new(
                "holder-oversleeps-its-deadline",
                SKEW,
                vec![
                    ActorSpec {
                        hold_ms: TIMEOUT + SKEW + 10,
                        may_crash: false,
                        ..holder()
                    },
                    waiter("W"),
                ],
            ),
            2,
        ),
        // Two waiters race to take over from a crashed (or paused) holder.
        (
            Scenario {
                crashes: 1,
                ..Scenario::new(
                    "two-waiters-race-for-a-takeover",
                    SKEW,
                    vec![
                        ActorSpec {
                            refreshes: 0,
                            ..holder()
                        },
                        waiter("V"),
                        ActorSpec {
                            offset_ms: 0,
                            ..waiter("W")
                        },
                    ],
                )
            },
            1,
        ),
        // Retried RPCs and torn listings while two actors create the lockdir and trade the
        // lock twice.
        (
            Scenario {
                faults: 2,
                ..Scenario::new(
                    "retried-rpcs-and-torn-listings",
                    SKEW,
                    vec![
                        ActorSpec {
                            rounds: 2,
                            ..ActorSpec::new("A", TIMEOUT, 0)
                        },
                        ActorSpec {
                            rounds: 2,
                            ..waiter("B")
                        },
                    ],
                )
            },
            1,
        ),
    ]
}

/// Random schedules: this many per unit of `MODEL_CHECK_SCALE`.
const RANDOM_SCHEDULES: u64 = 4_000;

/// The seeds the random search runs: `MODEL_CHECK_SEED` alone, or the default range.
fn random_seeds() -> Vec<u64> {
    match std::env::var("MODEL_CHECK_SEED") {
        Ok(s) => {
            let s = s.trim();
            let seed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            vec![seed.expect("MODEL_CHECK_SEED is a number (decimal or 0x-hex)")]
        }
        Err(_) => (0..RANDOM_SCHEDULES * scale()).collect(),
    }
}

/// Search every exhaustive scenario, then the random ones, with `setup` on every actor
/// thread; the first violation found, or what was explored.
fn search(setup: &Setup) -> Result<Vec<(String, Stats)>, Box<Found>> {
    let mut done = Vec::new();
    for (scenario, bound) in exhaustive_scenarios() {
        let start = Instant::now();
        let searched = explore_dfs(&scenario, bound, 1_000_000, setup)?;
        assert!(
            searched.complete,
            "{} was not searched to the end",
            scenario.name
        );
        done.push((
            format!(
                "{} (all schedules with <= {bound} preemptions, {:.1?})",
                scenario.name,
                start.elapsed()
            ),
            searched.stats,
        ));
    }
    let start = Instant::now();
    let stats = explore_random(
        "random",
        random_seeds().into_iter(),
        &Scenario::random,
        setup,
    )?;
    done.push((
        format!("random scenarios and schedules ({:.1?})", start.elapsed()),
        stats,
    ));
    Ok(done)
}

#[test]
fn the_protocol_keeps_its_invariants_in_every_explored_schedule() {
    let start = Instant::now();
    let done = search(&no_setup).unwrap_or_else(|found| panic!("{found}"));
    let mut total = Stats::default();
    for (what, stats) in &done {
        summary(&format!("{what}: {stats}"));
        total += *stats;
    }
    summary(&format!(
        "TOTAL {} schedules explored, no violation, in {:.1?}",
        total.schedules,
        start.elapsed()
    ));
    // The search reached what it is meant to check: no pass by never getting there.
    for (what, count) in [
        ("takeovers of expired locks", total.takeovers),
        ("holders told they lost the lock", total.compromised),
        ("crashes", total.crashes),
        ("pauses", total.pauses),
        ("global pauses", total.jumps),
        ("retried RPCs", total.faults),
        ("torn listings", total.torn_listings),
        ("busy outcomes", total.busy),
    ] {
        assert!(count > 0, "the search never produced any {what}");
    }
}

#[test]
fn clocks_further_apart_than_the_stated_skew_are_caught() {
    // The same holder and waiter as above, but their clocks differ by 50 ms while the lock
    // allows for 20: the waiter takes over while the holder still believes it holds.
    let scenario = Scenario::new(
        "clocks-beyond-the-stated-skew",
        SKEW,
        vec![
            ActorSpec {
                offset_ms: -25,
                may_crash: false,
                ..holder()
            },
            ActorSpec {
                offset_ms: 25,
                ..waiter("W")
            },
        ],
    );
    assert!(!scenario.clocks_are_honest());
    match explore_dfs(&scenario, 1, 100_000, &no_setup) {
        Ok(searched) => panic!(
            "no violation found with dishonest clocks in {} schedules",
            searched.stats.schedules
        ),
        Err(found) => {
            summary(&format!(
                "dishonest clocks: found after {} schedules: {}",
                found.outcome.stats.schedules,
                found.outcome.violation.as_ref().unwrap()
            ));
            assert_eq!(
                found.outcome.violation.as_ref().unwrap().invariant,
                Invariant::MutualExclusion,
                "{found}"
            );
            assert!(found.reproduced, "{found}");
        }
    }
}

/// Plant `bug` in the real protocol and require the search to find a violation of one of
/// `expected`; print it.
#[cfg(feature = "planted-bugs")]
fn planted_bug_is_found(bug: lockbydir_protocol::planted::PlantedBug, expected: &[Invariant]) {
    let plant = move || lockbydir_protocol::planted::plant(bug);
    let start = Instant::now();
    match search(&plant) {
        Ok(done) => panic!(
            "planted bug {bug:?} was not found in {} schedules",
            done.iter().map(|(_, s)| s.schedules).sum::<u64>()
        ),
        Err(found) => {
            summary(&format!(
                "planted bug {bug:?} found in {:.1?}:\n{found}",
                start.elapsed()
            ));
            let invariant = found.outcome.violation.as_ref().unwrap().invariant;
            assert!(expected.contains(&invariant), "{found}");
            assert!(found.reproduced, "{found}");
        }
    }
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_takeover_by_remove_then_create_is_caught() {
    planted_bug_is_found(
        lockbydir_protocol::planted::PlantedBug::TakeoverByRemoveThenCreate,
        &[
            Invariant::MutualExclusion,
            Invariant::Liveness,
            Invariant::Fencing,
        ],
    );
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_release_without_ownership_check_is_caught() {
    planted_bug_is_found(
        lockbydir_protocol::planted::PlantedBug::ReleaseWithoutOwnershipCheck,
        &[Invariant::LostHolderLearns, Invariant::MutualExclusion],
    );
}
