//! Model checking the lock protocol: see `model/mod.rs` for how, `model/checker.rs` for the
//! invariants. Each test prints a summary line to stderr with how many schedules it explored.

mod model;

use std::time::Instant;

use model::dfs::explore_dfs;
use model::explore::{explore_random, no_setup, scale, summary};
use model::scenario::{ActorSpec, Scenario};

fn probe_small() -> Scenario {
    let holder = ActorSpec {
        offset_ms: -10,
        refreshes: 1,
        hold_ms: 40,
        may_crash: true,
        ..ActorSpec::new("H", 100, 0)
    };
    let waiter = ActorSpec {
        offset_ms: 10,
        hold_ms: 20,
        ..ActorSpec::new("W", 100, 400)
    };
    Scenario {
        crashes: 1,
        ..Scenario::new("crash-and-wait", 20, vec![holder, waiter])
    }
}

#[test]
fn exhaustive_small() {
    let start = Instant::now();
    let s = probe_small();
    for bound in 0..=2 {
        match explore_dfs(&s, bound, 200_000 * scale(), &no_setup) {
            Ok(r) => summary(&format!(
                "{} bound {bound}: {} complete={} in {:.1?}",
                s.name,
                r.stats,
                r.complete,
                start.elapsed()
            )),
            Err(found) => panic!("{found}"),
        }
    }
}

#[test]
fn random_small() {
    let start = Instant::now();
    match explore_random("random", 0..200 * scale(), &Scenario::random, &no_setup) {
        Ok(stats) => summary(&format!("random: {stats} in {:.1?}", start.elapsed())),
        Err(found) => panic!("{found}"),
    }
}
