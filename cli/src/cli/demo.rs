//! `lockbydir demo`: the lock at work, in two parts. Several sleepers share one bed (some
//! forget to unlock, some run out of patience), then a crowd hammers one lock. Both end by
//! checking from the recorded times that no two ever held the lock at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use lockbydir::{Place, PluginConfig, PluginRunner, guests};
use lockbydir_cli::intervals::{self, Hold};

use super::Global;
use super::scratch::ScratchDir;

/// Show the lock at work: sleepers share one bed (as sandboxed plugins and as separate
/// processes; some forget to unlock, some run out of patience), then a crowd hammers one lock.
///
/// Each part ends by checking, from the times each holder recorded, that no two ever held the
/// lock at once. The locks (demo-bed, demo-hammer) go into the lock directory.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many contenders hammer the lock in the second part (plugin instances on threads,
    /// plus 4 separate processes).
    #[arg(long, default_value_t = 100)]
    hammer: usize,
}

/// One sleeper of the first demo.
struct Sleeper {
    name: &'static str,
    sleep_ms: u64,
    patience_ms: u64,
    forget: bool,
    /// A separate `lockbydir run` process, or a plugin instance in this process.
    process: bool,
}

const BED: &str = "demo-bed";
const HAMMERED: &str = "demo-hammer";
const BED_TIMEOUT_MS: u64 = 1_000;

const SLEEPERS: &[Sleeper] = &[
    Sleeper {
        name: "alice",
        sleep_ms: 400,
        patience_ms: 10_000,
        forget: false,
        process: false,
    },
    Sleeper {
        name: "bob",
        sleep_ms: 300,
        patience_ms: 10_000,
        forget: true,
        process: false,
    },
    Sleeper {
        name: "carol",
        sleep_ms: 300,
        patience_ms: 250,
        forget: false,
        process: false,
    },
    Sleeper {
        name: "dave",
        sleep_ms: 300,
        patience_ms: 10_000,
        forget: false,
        process: false,
    },
    Sleeper {
        name: "erin",
        sleep_ms: 300,
        patience_ms: 10_000,
        forget: false,
        process: true,
    },
    Sleeper {
        name: "frank",
        sleep_ms: 200,
        patience_ms: 10_000,
        forget: true,
        process: true,
    },
    Sleeper {
        name: "grace",
        sleep_ms: 300,
        patience_ms: 400,
        forget: false,
        process: true,
    },
];

pub fn demo(global: &Global, args: DemoArgs) -> anyhow::Result<u8> {
    let lock_dir = global.lock_dir()?;
    // Logs and plugin files, removed at the end.
    let work = ScratchDir::new(&std::env::temp_dir(), "lockbydir-demo")?;
    let runtime = global.runtime()?;
    let runner = PluginRunner::new(&runtime)?;
    println!("lock directory: {}", lock_dir.display());
    println!("scratch files:  {}\n", work.0.display());

    let beds_ok = sleepers(global, &runner, &lock_dir, &work.0)?;
    println!();
    let hammer_ok = hammer(global, &runner, &lock_dir, &work.0, args.hammer)?;
    Ok(if beds_ok && hammer_ok { 0 } else { 1 })
}

/// Part one: one bed, several sleepers.
fn sleepers(
    global: &Global,
    runner: &PluginRunner,
    locks: &Path,
    work: &Path,
) -> anyhow::Result<bool> {
    println!(
        "== One bed, {} sleepers (timeout {} ms; bob and frank forget to unlock; carol and grace are impatient) ==",
        SLEEPERS.len(),
        BED_TIMEOUT_MS
    );
    let plugin = work.join("sleeper.wasm");
    std::fs::write(&plugin, guests::SLEEPER_PLUGIN)?;
    let component = runner
        .runtime()
        .compile_plugin(guests::SLEEPER_PLUGIN, "the sleeper plugin")?;
    let args = |s: &Sleeper| -> Vec<String> {
        let linger = if s.forget { 2 * BED_TIMEOUT_MS } else { 0 };
        ["--name", s.name, "--bed", BED, "--log", "/work/bed.log"]
            .iter()
            .map(|a| a.to_string())
            .chain([
                "--sleep-ms".into(),
                s.sleep_ms.to_string(),
                "--patience-ms".into(),
                s.patience_ms.to_string(),
                "--timeout-ms".into(),
                BED_TIMEOUT_MS.to_string(),
                "--forget".into(),
                u8::from(s.forget).to_string(),
                "--linger-ms".into(),
                linger.to_string(),
            ])
            .collect()
    };
    let results: Vec<(String, anyhow::Result<i32>)> = std::thread::scope(|scope| {
        let tasks: Vec<_> = SLEEPERS
            .iter()
            .map(|s| {
                let argv = args(s);
                let component = &component;
                scope.spawn(move || {
                    let result = if s.process {
                        run_process(
                            global,
                            locks,
                            work,
                            &plugin_path(work),
                            s.name,
                            &argv,
                            false,
                        )
                    } else {
                        let config = plugin_config(s.name, argv, locks, work, false);
                        runner.run(component, &config).map_err(Into::into)
                    };
                    (s.name.to_owned(), result)
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| t.join().expect("sleeper thread"))
            .collect()
    });
    for (name, result) in &results {
        match result {
            Ok(0) => {}
            Ok(code) => println!("  {name} exited with {code}"),
            Err(e) => println!("  {name} failed: {e:#}"),
        }
    }
    let log = std::fs::read_to_string(work.join("bed.log")).unwrap_or_default();
    let gave_up = log.lines().filter(|l| l.starts_with("gave-up ")).count();
    let holds = intervals::parse(&log, "slept ").map_err(anyhow::Error::msg)?;
    let ok = report("sleeps", holds, SLEEPERS.len() - gave_up, None);
    println!("  {gave_up} sleeper(s) ran out of patience");
    Ok(ok && results.iter().all(|(_, r)| matches!(r, Ok(0))))
}

/// Part two: many contenders, one lock, a counter incremented under it.
fn hammer(
    global: &Global,
    runner: &PluginRunner,
    locks: &Path,
    work: &Path,
    contenders: usize,
) -> anyhow::Result<bool> {
    const PROCESSES: usize = 4;
    println!(
        "== Massive hammering: {contenders} plugin instances and {PROCESSES} processes on one lock =="
    );
    let counter_wasm = work.join("counter.wasm");
    std::fs::write(&counter_wasm, guests::COUNTER_PLUGIN)?;
    std::fs::write(work.join("counter"), "0")?;
    let component = runner
        .runtime()
        .compile_plugin(guests::COUNTER_PLUGIN, "the counter plugin")?;
    let args = |who: String| -> Vec<String> {
        [
            "--lock",
            HAMMERED,
            "--counter",
            "/work/counter",
            "--log",
            "/work/hammer.log",
            "--rounds",
            "1",
            "--label",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([who])
        .collect()
    };
    let started = Instant::now();
    let failures: usize = std::thread::scope(|scope| {
        let mut tasks = Vec::new();
        for i in 0..contenders {
            let (component, argv) = (&component, args(format!("plugin-{i}")));
            tasks.push(scope.spawn(move || {
                let config = plugin_config(&format!("plugin-{i}"), argv, locks, work, true);
                runner.run(component, &config).map_err(anyhow::Error::from)
            }));
        }
        for i in 0..PROCESSES {
            let argv = args(format!("process-{i}"));
            let wasm = counter_wasm.clone();
            let name = format!("process-{i}");
            tasks.push(
                scope.spawn(move || run_process(global, locks, work, &wasm, &name, &argv, true)),
            );
        }
        tasks
            .into_iter()
            .map(|t| t.join().expect("contender thread"))
            .filter(|r| !matches!(r, Ok(0)))
            .inspect(|r| println!("  a contender failed: {r:?}"))
            .count()
    });
    let elapsed = started.elapsed();
    let expected = contenders + PROCESSES;
    let count: usize = std::fs::read_to_string(work.join("counter"))?
        .trim()
        .parse()?;
    let log = std::fs::read_to_string(work.join("hammer.log")).unwrap_or_default();
    let holds = intervals::parse(&log, "").map_err(anyhow::Error::msg)?;
    println!(
        "  {expected} contenders done in {:.2} s; counter = {count} (expected {expected}){}",
        elapsed.as_secs_f64(),
        if count == expected { "" } else { "  <-- WRONG" }
    );
    let ok = report("holds", holds, expected, Some(elapsed.as_secs_f64()));
    Ok(ok && count == expected && failures == 0)
}

/// Print the overlap check over `holds`; true if it passed and `expected` holds were seen.
fn report(what: &str, holds: Vec<Hold>, expected: usize, _secs: Option<f64>) -> bool {
    let mut gaps: Vec<u128> = {
        let mut sorted = holds.clone();
        sorted.sort_by_key(|h| h.start);
        sorted
            .windows(2)
            .map(|w| w[1].start.saturating_sub(w[0].end))
            .collect()
    };
    gaps.sort_unstable();
    match intervals::check(holds) {
        Ok(r) => {
            let median = gaps
                .get(gaps.len() / 2)
                .map_or("-".into(), |g| format!("{:.3} ms", *g as f64 / 1e6));
            println!(
                "  check: {} {what} recorded (expected {expected}); no two overlapped; median gap between holders {median}; fences rose in time order: {}",
                r.holds,
                if r.fences_increase { "yes" } else { "NO" }
            );
            r.holds == expected && r.fences_increase
        }
        Err(overlap) => {
            println!("  check FAILED: {overlap}");
            false
        }
    }
}

fn plugin_path(work: &Path) -> PathBuf {
    work.join("sleeper.wasm")
}

fn plugin_config(
    name: &str,
    args: Vec<String>,
    locks: &Path,
    work: &Path,
    quiet: bool,
) -> PluginConfig {
    PluginConfig {
        args,
        dirs: vec![(work.to_owned(), "/work".to_owned())],
        reporter: Some(super::run::reporter(quiet)),
        ..PluginConfig::new(name, Place::LockDir(locks.to_owned()))
    }
}

/// Run a plugin in a separate `lockbydir run` process.
fn run_process(
    global: &Global,
    locks: &Path,
    work: &Path,
    wasm: &Path,
    name: &str,
    args: &[String],
    quiet: bool,
) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("find the lockbydir executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--locks").arg(locks).arg("run");
    if global.no_cache {
        cmd.arg("--no-cache");
    }
    if let Some(component) = &global.lock_component {
        cmd.arg("--lock-component").arg(component);
    }
    if quiet {
        cmd.arg("--quiet");
    }
    cmd.arg("--name").arg(name);
    cmd.arg("--dir")
        .arg(format!("{}::/work", work.display()))
        .arg(wasm)
        .arg("--")
        .args(args);
    let status = cmd.status().context("start a lockbydir process")?;
    Ok(status.code().unwrap_or(1))
}
