//! Running schedules: one (with the final probe), many random ones, and reporting what was
//! found so that it can be read and reproduced.

use std::fmt;
use std::io::Write;

use super::actor::drive;
use super::engine::{Engine, Outcome};
use super::scenario::Scenario;
use super::stats::Stats;
use super::strategy::{Random, Replay, Strategy};

/// Code run on every actor thread before it starts (plants a bug, with `planted-bugs`).
pub type Setup = dyn Fn() + Sync;

/// Nothing to set up.
pub fn no_setup() {}

/// Run one schedule of `scenario` chosen by `strategy`, then, if nothing broke, the final
/// probe alone.
pub fn run_schedule(
    scenario: &Scenario,
    strategy: Box<dyn Strategy>,
    seed: u64,
    setup: &Setup,
) -> Outcome {
    let engine = Engine::new(scenario, strategy, seed);
    let probe = scenario.probe();
    let n = scenario.actors.len();
    let script = |e: &Engine, me: usize| match scenario.actors.get(me) {
        Some(spec) => drive(e, me, scenario, spec, false),
        None => drive(e, me, scenario, &probe, true),
    };
    engine.run_phase(&script, setup);
    engine.check_world(|c, w| c.at_rest(w));
    if !engine.violated() {
        let index = engine.add_actor(&probe, Box::new(Replay::default()));
        debug_assert_eq!(index, n);
        engine.run_phase(&script, setup);
        engine.check_world(|c, w| c.after_probe(w));
    }
    engine.finish()
}

/// A path of option indices, run-length encoded: `0*12,1,0*3`.
pub fn encode_path(path: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < path.len() {
        let run = path[i..].iter().take_while(|&&c| c == path[i]).count();
        out.push(match run {
            1 => path[i].to_string(),
            _ => format!("{}*{run}", path[i]),
        });
        i += run;
    }
    out.join(",")
}

/// A violating schedule, ready to print.
pub struct Found {
    /// The model.
    pub scenario: Scenario,
    /// How the schedule was found.
    pub how: String,
    /// The seed the actors' random numbers came from.
    pub seed: u64,
    /// How many schedules were explored to find it (this one included).
    pub explored: u64,
    /// The schedule.
    pub outcome: Outcome,
    /// Whether replaying its decisions gave the same violation again.
    pub reproduced: bool,
}

impl Found {
    /// Record a violating `outcome`, and replay it to show it is reproducible.
    pub fn new(
        scenario: &Scenario,
        how: String,
        seed: u64,
        explored: u64,
        outcome: Outcome,
        setup: &Setup,
    ) -> Self {
        let path = outcome.decisions.iter().map(|d| d.chosen).collect();
        let again = run_schedule(scenario, Box::new(Replay::new(path)), seed, setup);
        Found {
            scenario: scenario.clone(),
            how,
            seed,
            explored,
            reproduced: again.violation == outcome.violation,
            outcome,
        }
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<usize> = self.outcome.decisions.iter().map(|d| d.chosen).collect();
        writeln!(f, "VIOLATION {}", self.outcome.violation.as_ref().unwrap())?;
        writeln!(
            f,
            "found by: {}, after {} schedules",
            self.how, self.explored
        )?;
        writeln!(f, "scenario {}", self.scenario)?;
        writeln!(
            f,
            "schedule: {} steps, {} decisions (option indices, default 0): {}",
            self.outcome.stats.steps,
            path.len(),
            encode_path(&path)
        )?;
        writeln!(
            f,
            "replaying these decisions (actor random seed {:#x}) {}",
            self.seed,
            if self.reproduced {
                "gives the same violation"
            } else {
                "did NOT give the same violation: the harness is not deterministic"
            }
        )?;
        writeln!(
            f,
            "trace (t = virtual ms since the start; own clock = t + offset):"
        )?;
        write!(f, "{}", self.outcome.trace)
    }
}

/// How many times the default amount of work to do (`MODEL_CHECK_SCALE`, default 1).
pub fn scale() -> u64 {
    std::env::var("MODEL_CHECK_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Print one line straight to stderr, past the test harness's capture, so that CI logs show
/// it.
pub fn summary(line: &str) {
    let _ = writeln!(std::io::stderr(), "model-check: {line}");
}

/// Run one random schedule per seed, each on the scenario `scenario_for` draws for it;
/// stop at the first violation. `label` names the search in reports.
pub fn explore_random(
    label: &str,
    seeds: impl Iterator<Item = u64>,
    scenario_for: &dyn Fn(u64) -> Scenario,
    setup: &Setup,
) -> Result<Stats, Box<Found>> {
    let mut stats = Stats::default();
    for seed in seeds {
        let scenario = scenario_for(seed);
        let expected: u64 = scenario
            .actors
            .iter()
            .map(|a| 40 * u64::from(a.rounds) * (1 + u64::from(a.refreshes)))
            .sum();
        let outcome = run_schedule(
            &scenario,
            Box::new(Random::new(seed, expected)),
            seed,
            setup,
        );
        stats += outcome.stats;
        if outcome.violation.is_some() {
            let how = format!(
                "{label}: random schedule with seed {seed:#x} (rerun just this one with \
                 MODEL_CHECK_SEED={seed:#x})"
            );
            return Err(Box::new(Found::new(
                &scenario,
                how,
                seed,
                stats.schedules,
                outcome,
                setup,
            )));
        }
    }
    Ok(stats)
}
