//! Start-up: compiling the lock component, starting from the compiled cache, one more
//! plugin instance, a whole `lockbydir run` process, and the memory of an idle plugin.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use lockbydir::backend::LockDirBackend;
use lockbydir::{Place, PluginConfig, RuntimeBuilder};
use serde::Serialize;

use super::contenders::{Setup, wait_ready, write_go};
use super::plan::Plan;
use super::stats::median;
use super::sys;

/// Start-up costs, medians over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct Startup {
    /// `RuntimeBuilder::no_cache().build()`: engine + Cranelift compile of the lock component.
    pub compile_no_cache_ms: f64,
    pub compile_runs: usize,
    /// `RuntimeBuilder::build()` with a warm cache: engine + loading the compiled component.
    pub start_from_cache_ms: f64,
    /// `LockDirBackend::new`: one more lock component instance.
    pub lock_service_ms: f64,
    /// One more plugin: `PluginRunner::run` of a plugin whose `main` returns at once (its
    /// own lock component instance included).
    pub one_more_plugin_ms: f64,
    /// A whole `lockbydir run` process of that plugin, from spawn to exit, warm cache.
    pub process_run_ms: f64,
    pub runs: usize,
    /// Resident memory per idle plugin instance (its lock component and thread included).
    pub rss_per_idle_plugin_kib: f64,
    pub idle_plugins: usize,
}

/// Measure in `base` (a scratch directory).
pub fn measure(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Startup> {
    eprintln!("bench: start-up");
    let builder = || {
        let mut b = RuntimeBuilder::new();
        if let Some(file) = setup.global.lock_component() {
            b = b.lock_component(file);
        }
        b
    };
    let mut compile = times(plan.compile_runs, || {
        builder().no_cache().build()?;
        Ok(())
    })?;
    let cache = base.join("cache");
    builder().cache_dir(&cache).build()?;
    let mut from_cache = times(plan.startup_runs, || {
        builder().cache_dir(&cache).build()?;
        Ok(())
    })?;
    let locks = base.join("startup-locks");
    std::fs::create_dir_all(&locks)?;
    let runtime = setup.runner.runtime();
    let mut service = times(plan.startup_runs, || {
        LockDirBackend::new(runtime, &locks)?;
        Ok(())
    })?;
    let noop = plugin_config("noop", vec!["--mode".into(), "noop".into()], &locks, base);
    setup.runner.run(setup.plugin, &noop)?;
    let mut plugin = times(plan.startup_runs, || {
        let code = setup.runner.run(setup.plugin, &noop)?;
        anyhow::ensure!(code == 0, "the bench plugin exited with {code}");
        Ok(())
    })?;
    let mut process = times(plan.startup_runs.min(11), || run_process(setup, &locks))?;
    let rss = idle_rss(setup, plan.idle_plugins, &locks, &base.join("idle"))?;
    Ok(Startup {
        compile_no_cache_ms: median(&mut compile),
        compile_runs: compile.len(),
        start_from_cache_ms: median(&mut from_cache),
        lock_service_ms: median(&mut service),
        one_more_plugin_ms: median(&mut plugin),
        process_run_ms: median(&mut process),
        runs: plan.startup_runs,
        rss_per_idle_plugin_kib: rss,
        idle_plugins: plan.idle_plugins,
    })
}

/// Run `f` `n` times; each run's time in ms.
fn times(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

fn plugin_config(name: &str, args: Vec<String>, locks: &Path, work: &Path) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        args,
        dirs: vec![(work.to_owned(), "/work".into())],
        ..PluginConfig::new(name, Place::LockDir(locks.to_owned()))
    }
}

/// `lockbydir run --quiet bench.wasm -- --mode noop`, start to exit.
fn run_process(setup: &Setup, locks: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("find the lockbydir executable")?;
    let mut cmd = Command::new(exe);
    if setup.global.no_cache() {
        cmd.arg("--no-cache");
    }
    if let Some(component) = setup.global.lock_component() {
        cmd.arg("--lock-component").arg(component);
    }
    let status = cmd
        .arg("--locks")
        .arg(locks)
        .args(["run", "--quiet"])
        .arg(setup.plugin_file)
        .args(["--", "--mode", "noop"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("start lockbydir run")?;
    anyhow::ensure!(status.success(), "lockbydir run exited with {status}");
    Ok(())
}

/// Resident memory per idle plugin instance (KiB): `n` instances on threads, each holding an
/// open lock and waiting for the go file.
fn idle_rss(setup: &Setup, n: usize, locks: &Path, work: &Path) -> anyhow::Result<f64> {
    std::fs::create_dir_all(work.join("ready"))?;
    let before = sys::rss_bytes();
    let after = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let label = format!("idle{i:03}");
                let args = ["--mode", "idle", "--go-poll-ms", "20", "--work", "/work"]
                    .map(String::from)
                    .into_iter()
                    .chain(["--label".into(), label.clone()])
                    .collect();
                let config = plugin_config(&label, args, locks, work);
                scope.spawn(move || setup.runner.run(setup.plugin, &config))
            })
            .collect();
        let ready = wait_ready(work, n, || tasks.iter().all(|t| !t.is_finished()));
        let after = sys::rss_bytes();
        write_go(work, 0, 0)?;
        for task in tasks {
            let code = task
                .join()
                .map_err(|_| anyhow::anyhow!("an idle plugin panicked"))??;
            anyhow::ensure!(code == 0, "an idle plugin exited with {code}");
        }
        ready.map(|()| after)
    })?;
    Ok(after.saturating_sub(before) as f64 / 1024.0 / n.max(1) as f64)
}
