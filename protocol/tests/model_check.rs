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
//! require the same searches to find a violating schedule, which they print.

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

/// A holder with the slowest clock allowed (a waiter's clock runs up to `SKEW` ahead, so the
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

/// Two waiters race to take over from a holder that crashed or was paused.
fn two_waiters() -> Scenario {
    Scenario {
        crashes: 1,
        prompt_probe: true,
        ..Scenario::new(
            "two-waiters-race-for-a-takeover",
            SKEW,
            vec![
                ActorSpec {
                    refreshes: 0,
                    ..holder()
                },
                waiter("V"),
                waiter("W"),
            ],
        )
    }
}

/// A line: a holder that comes back for more, and two waiters that queue twice each, one of
/// which may crash anywhere (also holding a ticket, or between taking the lock and leaving
/// the queue).
fn line_of_waiters() -> Scenario {
    Scenario {
        crashes: 1,
        ..Scenario::new(
            "a-line-of-waiters",
            SKEW,
            vec![
                ActorSpec {
                    rounds: 2,
                    refreshes: 0,
                    hold_ms: 30,
                    may_crash: false,
                    ..holder()
                },
                ActorSpec {
                    rounds: 2,
                    may_crash: true,
                    ..waiter("V")
                },
                ActorSpec {
                    rounds: 2,
                    ..waiter("W")
                },
            ],
        )
    }
}

/// A hold longer than a ticket's half-life, with two waiters behind it: the waiters renew
/// their tickets while they wait, and the one behind, watching the ticket before it, follows
/// that ticket's renewal to its new name (or reads the queue when a pause made it late).
fn long_hold() -> Scenario {
    const HOLD: u64 = 1_500;
    Scenario {
        pauses: 1,
        ..Scenario::new(
            "a-hold-longer-than-half-a-ticket",
            SKEW,
            vec![
                ActorSpec {
                    refreshes: 0,
                    hold_ms: HOLD,
                    may_crash: false,
                    ..ActorSpec::new("H", 2 * HOLD, 0)
                },
                ActorSpec {
                    patience_ms: 4 * HOLD,
                    ..waiter("V")
                },
                ActorSpec {
                    patience_ms: 4 * HOLD,
                    start_ms: 1,
                    ..waiter("W")
                },
            ],
        )
    }
}

/// Retried RPCs and torn listings while two actors create the lockdir and trade the lock
/// twice.
fn faults() -> Scenario {
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
    }
}

/// A holder that works past its own deadline (a pause it causes itself), then releases;
/// a waiter takes over meanwhile, or not.
fn oversleeping_holder() -> Scenario {
    Scenario::new(
        "holder-oversleeps-its-deadline",
        SKEW,
        vec![
            ActorSpec {
                refreshes: 0,
                hold_ms: TIMEOUT + SKEW + 10,
                may_crash: false,
                ..holder()
            },
            waiter("W"),
        ],
    )
}

/// A holder that may crash at any step or be paused past its deadline (then refreshes), and
/// a waiter, on a filesystem without timestamps: the clock rule alone must keep them apart.
fn crash_or_pause() -> Scenario {
    Scenario {
        crashes: 1,
        fs_timestamps: false,
        ..Scenario::new(
            "crash-or-pause-then-takeover",
            SKEW,
            vec![holder(), waiter("W")],
        )
    }
}

/// The lock starts two fences short of the last one there is: a holder that comes back and
/// two waiters, one of which may crash, want three acquisitions, so the last of them (and the
/// final probe) must be refused, never handed a fence again.
fn near_the_last_fence() -> Scenario {
    Scenario {
        crashes: 1,
        initial_fence: Some(u64::MAX - 2),
        ..Scenario::new(
            "near-the-last-fence",
            SKEW,
            vec![
                ActorSpec {
                    rounds: 2,
                    refreshes: 0,
                    ..holder()
                },
                waiter("V"),
                waiter("W"),
            ],
        )
    }
}

/// A holder with a long timeout that may crash holding, and a waiter that arrives just
/// before its deadline, marks its entry, and gives up at about the deadline: the final probe
/// must then take over as soon as the deadline and the filesystem's clock allow, not a
/// timeout after the mark.
fn a_late_mark() -> Scenario {
    const LONG: u64 = 4 * TIMEOUT;
    Scenario {
        crashes: 1,
        pauses: 0,
        prompt_probe: true,
        ..Scenario::new(
            "a-late-mark-on-a-dead-holder",
            SKEW,
            vec![
                ActorSpec {
                    refreshes: 0,
                    ..ActorSpec {
                        timeout_ms: LONG,
                        hold_ms: LONG / 2,
                        ..holder()
                    }
                },
                ActorSpec {
                    start_ms: LONG - LONG / 10,
                    patience_ms: LONG / 10,
                    ..waiter("W")
                },
            ],
        )
    }
}

/// The exhaustive searches, cheapest first, each with its bound on deviations from the
/// default schedule.
fn exhaustive() -> [(Scenario, usize); 6] {
    [
        (near_the_last_fence(), 2),
        (two_waiters(), 2),
        (line_of_waiters(), 2),
        (faults(), 2),
        (oversleeping_holder(), 3),
        (crash_or_pause(), 3),
    ]
}

/// The bound [`exhaustive`] gives `scenario`.
fn bound(scenario: &Scenario) -> usize {
    exhaustive()
        .iter()
        .find(|(s, _)| s.name == scenario.name)
        .map(|(_, bound)| *bound)
        .expect("every exhaustive scenario is listed in exhaustive()")
}

/// Search `scenario` exhaustively up to `bound` deviations, with `setup` on every actor
/// thread: what was explored, or the first violation.
fn exhaustive_search(
    scenario: &Scenario,
    bound: usize,
    setup: &Setup,
) -> Result<Stats, Box<Found>> {
    let start = Instant::now();
    let searched = explore_dfs(scenario, bound, 1_000_000, setup)?;
    assert!(
        searched.complete,
        "{} was not searched to the end",
        scenario.name
    );
    summary(&format!(
        "{}: every schedule with <= {bound} deviations: {} in {:.1?}",
        scenario.name,
        searched.stats,
        start.elapsed()
    ));
    Ok(searched.stats)
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

/// Random scenarios and schedules, with `setup` on every actor thread.
fn random_search(setup: &Setup) -> Result<Stats, Box<Found>> {
    let start = Instant::now();
    let stats = explore_random(
        "random",
        random_seeds().into_iter(),
        &Scenario::random,
        setup,
    )?;
    summary(&format!(
        "random scenarios and schedules: {stats} in {:.1?}",
        start.elapsed()
    ));
    Ok(stats)
}

/// The search reached what it is meant to check: no pass by never getting there.
fn assert_exercised(what: &str, counts: &[(&str, u64)]) {
    for (name, count) in counts {
        assert!(*count > 0, "{what} never produced any {name}");
    }
}

/// Search `scenario` exhaustively to `bound` twice: as it is (waiters poll), and with
/// wake-ups, where the scheduler may also lose one, deliver one late, or cause one for
/// nothing. What each search explored, with its scenario. A scenario where nothing a waiter
/// sleeps on ever changes (a dead holder and nobody else) has no wake-up to lose: `losable`
/// false.
fn both_ways_where(scenario: &Scenario, bound: usize, losable: bool) -> Vec<(Scenario, Stats)> {
    [scenario.clone(), scenario.with_wakeups()]
        .into_iter()
        .map(|s| {
            let stats = no_violation(exhaustive_search(&s, bound, &no_setup));
            if s.wakeups {
                assert_exercised(
                    &s.name,
                    &[
                        ("wake-up", stats.early_wakeups),
                        ("wake-up for nothing", stats.spurious_wakeups),
                    ],
                );
                if losable {
                    assert_exercised(&s.name, &[("lost wake-up", stats.lost_wakeups)]);
                }
            }
            (s, stats)
        })
        .collect()
}

/// [`both_ways_where`] a wake-up can be lost.
fn both_ways(scenario: &Scenario, bound: usize) -> Vec<(Scenario, Stats)> {
    both_ways_where(scenario, bound, true)
}

fn no_violation(result: Result<Stats, Box<Found>>) -> Stats {
    result.unwrap_or_else(|found| panic!("{found}"))
}

#[test]
fn a_line_of_waiters_keeps_the_invariants() {
    let scenario = line_of_waiters();
    for (scenario, s) in both_ways(&scenario, bound(&scenario)) {
        assert_exercised(
            &scenario.name,
            &[
                ("ticket", s.tickets),
                ("mark", s.marks),
                ("crash", s.crashes),
                ("crashed waiter's ticket left", s.leaked_tickets),
                (
                    "ticket just made moved behind one made at the same moment",
                    s.moves,
                ),
            ],
        );
    }
}

#[test]
fn waiters_behind_a_long_hold_renew_and_follow_renewals() {
    // Woken waiters only: polling through a hold this long takes six minutes for bound 2,
    // and a polling waiter never follows a renewal (it reads the queue as it looks).
    let scenario = long_hold().with_wakeups();
    let s = no_violation(exhaustive_search(&scenario, 2, &no_setup));
    assert_exercised(
        &scenario.name,
        &[
            ("renewal", s.renewals),
            (
                "renewal followed by a look at the name",
                s.renewals_followed,
            ),
            ("wake-up", s.early_wakeups),
            ("pause", s.pauses),
        ],
    );
}

#[test]
fn bounded_fairness_keeps_the_invariants() {
    // Holders that take the lock back past waiters until the first in line has waited the
    // bound and marks the holder's entry; the handover to a waiter then as in the FIFO line.
    // Two waiters both ways (polling and woken); the longer line only woken, since its
    // polling search would cost another minute of CI for paths the two waiters take too.
    let two = two_waiters();
    let mut searched = both_ways(&two.with_bounded_fairness(), bound(&two));
    let line = line_of_waiters().with_bounded_fairness().with_wakeups();
    let stats = no_violation(exhaustive_search(
        &line,
        bound(&line_of_waiters()),
        &no_setup,
    ));
    searched.push((line, stats));
    for (scenario, s) in searched {
        assert_exercised(
            &scenario.name,
            &[
                ("ticket", s.tickets),
                ("mark", s.marks),
                ("waiter passed over", s.overtakes),
                ("crash", s.crashes),
            ],
        );
        // Woken, the first in line guesses the name the release left: marked, then unmarked.
        if scenario.wakeups {
            assert_exercised(
                &scenario.name,
                &[("grant on a second guess", s.second_guesses)],
            );
        }
    }
}

#[test]
fn fences_near_the_last_one_are_never_repeated() {
    let scenario = near_the_last_fence();
    for (scenario, s) in both_ways(&scenario, bound(&scenario)) {
        assert_exercised(
            &scenario.name,
            &[
                ("takeover", s.takeovers),
                ("crash", s.crashes),
                ("acquire refused for exhausted fences", s.exhausted),
            ],
        );
    }
}

#[test]
fn a_late_mark_does_not_delay_the_takeover_of_a_dead_holder() {
    let scenario = a_late_mark();
    for (scenario, s) in both_ways_where(&scenario, 2, false) {
        assert_exercised(
            &scenario.name,
            &[
                ("takeover", s.takeovers),
                ("crash", s.crashes),
                ("mark", s.marks),
            ],
        );
    }
}

#[test]
fn two_waiters_racing_for_a_takeover_keep_the_invariants() {
    let scenario = two_waiters();
    for (scenario, s) in both_ways(&scenario, bound(&scenario)) {
        assert_exercised(
            &scenario.name,
            &[
                ("takeover", s.takeovers),
                ("crash", s.crashes),
                ("pause", s.pauses),
                ("holder told it lost the lock", s.compromised),
            ],
        );
    }
}

#[test]
fn retried_rpcs_and_torn_listings_keep_the_invariants() {
    let scenario = faults();
    for (scenario, s) in both_ways(&scenario, bound(&scenario)) {
        assert_exercised(
            &scenario.name,
            &[
                ("retried RPC", s.faults),
                ("torn listing", s.torn_listings),
                ("busy outcome", s.busy),
            ],
        );
    }
}

#[test]
fn a_holder_oversleeping_its_deadline_keeps_the_invariants() {
    let scenario = oversleeping_holder();
    for (scenario, s) in both_ways(&scenario, bound(&scenario)) {
        assert_exercised(
            &scenario.name,
            &[
                ("takeover", s.takeovers),
                ("holder told it lost the lock", s.compromised),
            ],
        );
    }
}

#[test]
fn a_crashed_or_paused_holder_keeps_the_invariants() {
    let scenario = crash_or_pause();
    for (scenario, s) in both_ways(&scenario, bound(&scenario)) {
        assert_exercised(
            &scenario.name,
            &[
                ("takeover", s.takeovers),
                ("crash", s.crashes),
                ("pause", s.pauses),
                ("holder told it lost the lock", s.compromised),
            ],
        );
    }
}

#[test]
fn random_scenarios_keep_the_invariants() {
    let s = no_violation(random_search(&no_setup));
    if std::env::var("MODEL_CHECK_SEED").is_err() {
        assert_exercised(
            "the random search",
            &[
                ("takeover", s.takeovers),
                ("crash", s.crashes),
                ("pause", s.pauses),
                ("global pause", s.jumps),
                ("retried RPC", s.faults),
                ("torn listing", s.torn_listings),
                ("holder told it lost the lock", s.compromised),
                ("wake-up", s.early_wakeups),
                ("lost wake-up", s.lost_wakeups),
                ("wake-up for nothing", s.spurious_wakeups),
                ("waiter passed over", s.overtakes),
                ("wait begun on a busy try's look", s.waits_after_a_try),
            ],
        );
    }
}

/// A holder and a waiter whose clocks differ by 50 ms while the lock allows for 20.
fn dishonest_clocks(fs_timestamps: bool) -> Scenario {
    Scenario {
        fs_timestamps,
        ..Scenario::new(
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
        )
    }
}

/// A holder, and a waiter whose clock runs an hour ahead (so the clock rule passes at once
/// and only the filesystem's clock keeps them apart), on a filesystem whose clock lags by
/// `lag_ms` and advances in steps of `granularity_ms`.
fn fast_taker_on_coarse_fs(name: &str, lag_ms: u64, granularity_ms: u64) -> Scenario {
    Scenario {
        fs_lag_ms: lag_ms,
        fs_granularity_ms: granularity_ms,
        // Long enough for the holder, paused, to expire by the filesystem's clock too.
        pauses: 1,
        pause_ms: 2 * TIMEOUT + 3 * granularity_ms + 2 * SKEW,
        ..Scenario::new(
            name,
            SKEW,
            vec![
                ActorSpec {
                    offset_ms: 0,
                    may_crash: false,
                    // Not a multiple of the clock's step, like most timeouts.
                    timeout_ms: TIMEOUT + 2,
                    ..holder()
                },
                ActorSpec {
                    offset_ms: 3_600_000,
                    patience_ms: 3 * granularity_ms + 8 * TIMEOUT,
                    ..waiter("W")
                },
            ],
        )
    }
}

/// A filesystem with whole-second timestamps (ext3 with small inodes, HFS+, some NFS
/// servers) whose clock also lags 5 ms.
fn whole_seconds() -> Scenario {
    fast_taker_on_coarse_fs("a-fast-taker-on-whole-second-timestamps", 5, 1_000)
}

/// A coarse clock like Linux's: a 4 ms tick, lagging 9 ms (the most measured after an idle
/// spell).
fn kernel_tick() -> Scenario {
    fast_taker_on_coarse_fs("a-fast-taker-on-a-4-ms-tick-lagging-9-ms", 9, 4)
}

/// Search `scenario` with the bound `bound` and require a mutual-exclusion violation that
/// replays; print it.
fn caught(scenario: &Scenario, bound: usize, what: &str, setup: &Setup) {
    match explore_dfs(scenario, bound, 100_000, setup) {
        Ok(searched) => panic!(
            "no violation found {what} in {} schedules",
            searched.stats.schedules
        ),
        Err(found) => {
            let violation = found.outcome.violation.as_ref().unwrap();
            summary(&format!(
                "{what}: caught after {} schedule(s): {violation}",
                found.explored
            ));
            assert_eq!(violation.invariant, Invariant::MutualExclusion, "{found}");
            assert!(found.reproduced, "{found}");
        }
    }
}

#[test]
fn clocks_further_apart_than_the_stated_skew_are_caught() {
    // Without filesystem timestamps only the clocks decide: the waiter, whose clock runs
    // ahead, takes over while the holder still believes it holds the lock.
    let scenario = dishonest_clocks(false);
    assert!(!scenario.clocks_are_honest());
    caught(
        &scenario,
        1,
        "dishonest clocks without filesystem timestamps",
        &no_setup,
    );
}

#[test]
fn filesystem_timestamps_keep_even_dishonest_clocks_apart() {
    // The same clocks, but the filesystem keeps timestamps (lagging, on a coarse clock): a
    // takeover also needs the lock to look expired by the filesystem's clock, which the
    // waiter's fast clock cannot hurry.
    let scenario = dishonest_clocks(true);
    for (scenario, s) in both_ways(&scenario, 2) {
        assert_exercised(&scenario.name, &[("takeover", s.takeovers)]);
    }
}

#[test]
fn a_coarse_lagging_filesystem_clock_keeps_a_fast_taker_out() {
    // Rule (b) alone, on a kernel's tick and on whole seconds: the margin for the clock's lag
    // and granularity keeps the takeover after the holder's deadline.
    for (scenario, bound) in [(kernel_tick(), 2), (whole_seconds(), 1)] {
        for (scenario, s) in both_ways(&scenario, bound) {
            assert_exercised(&scenario.name, &[("takeover", s.takeovers)]);
        }
    }
}

#[test]
fn a_filesystem_clock_coarser_than_the_margin_is_caught() {
    // Steps of 170 ms: readings look like whole 10 ms, so rule (b) allows for 10 ms of
    // granularity plus the lag margin, far less than the clock's real step. The mtime of the
    // holder's rename can then be 169 ms early, and the fast taker gets in at once.
    let scenario = fast_taker_on_coarse_fs("a-fast-taker-on-170-ms-steps", 1, 170);
    caught(
        &scenario,
        1,
        "a filesystem clock coarser than rule (b) allows for",
        &no_setup,
    );
}

/// Plant `bug` in the real protocol; require both the exhaustive searches and the random
/// search to find a violation of one of `expected`, and print what they found.
#[cfg(feature = "planted-bugs")]
fn planted_bug_is_found(bug: lockbydir_protocol::planted::PlantedBug, expected: &[Invariant]) {
    let plant = move || lockbydir_protocol::planted::plant(bug);
    let check = |how: &str, found: &Found| {
        let invariant = found.outcome.violation.as_ref().unwrap().invariant;
        assert!(
            expected.contains(&invariant),
            "{how} found an unexpected violation:\n{found}"
        );
        assert!(found.reproduced, "{found}");
    };
    // Waiters polling, and waiters woken by changes: each search must find it.
    for wakeups in [false, true] {
        let start = Instant::now();
        let exhaustive = exhaustive()
            .iter()
            .map(|(scenario, bound)| match wakeups {
                true => (scenario.with_wakeups(), *bound),
                false => (scenario.clone(), *bound),
            })
            .find_map(|(scenario, bound)| exhaustive_search(&scenario, bound, &plant).err())
            .unwrap_or_else(|| panic!("the exhaustive searches missed planted bug {bug:?}"));
        check("the exhaustive search", &exhaustive);
        summary(&format!(
            "planted bug {bug:?}: the exhaustive search ({}) found it in {:.1?}:\n{exhaustive}",
            if wakeups {
                "waiters woken by changes"
            } else {
                "waiters polling"
            },
            start.elapsed()
        ));
    }
    let start = Instant::now();
    let random = random_search(&plant)
        .err()
        .unwrap_or_else(|| panic!("the random search missed planted bug {bug:?}"));
    check("the random search", &random);
    summary(&format!(
        "planted bug {bug:?}: the random search found it too, in {:.1?}, after {} schedules: {}",
        start.elapsed(),
        random.explored,
        random.outcome.violation.as_ref().unwrap()
    ));
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

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_rule_b_without_a_clock_margin_is_caught() {
    // Rule (b) as it was, `fs_now - mtime > timeout`: on whole-second timestamps the holder's
    // rename is stamped up to a second early, and a taker whose clock runs ahead gets in long
    // before the holder's deadline.
    let bug = lockbydir_protocol::planted::PlantedBug::NoFilesystemClockMargin;
    let plant = move || lockbydir_protocol::planted::plant(bug);
    // Waiters polling, and waiters woken by changes.
    for (whole_seconds, kernel_tick) in [
        (whole_seconds(), kernel_tick()),
        (whole_seconds().with_wakeups(), kernel_tick().with_wakeups()),
    ] {
        caught(
            &whole_seconds,
            1,
            &format!(
                "planted bug NoFilesystemClockMargin in {}",
                whole_seconds.name
            ),
            &plant,
        );
        // On a kernel's 4 ms tick lagging 9 ms, too: the rename's mtime is up to 3 ms early.
        caught(
            &kernel_tick,
            2,
            &format!(
                "planted bug NoFilesystemClockMargin in {}",
                kernel_tick.name
            ),
            &plant,
        );
    }
}
