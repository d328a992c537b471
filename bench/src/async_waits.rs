//! WASI 0.3 plugin tasks waiting at once: one `lockbydir run` of the `tasks` plugin, whose N
//! tasks all wait for a lock the benchmark holds. While they wait, the threads of that process
//! (`/proc/PID/status`) and the tickets in the lock's queue are sampled, and its CPU time is
//! counted over a wait long enough for every ticket to be renewed; then the benchmark lets go
//! and times the line draining. One task alone first, for the baseline.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lockbydir::Place;
use lockbydir::types::{AcquireOutcome, Options};
use serde::Serialize;

use super::contenders::{Setup, lockbydir_command};
use super::plan::Plan;
use super::sys;

/// One number of waiting tasks.
#[derive(Clone, Debug, Serialize)]
pub struct AsyncWaitsRow {
    /// Tasks of the one plugin instance, each waiting on a handle of its own.
    pub tasks: usize,
    /// The most tickets seen in the lock's queue at once.
    pub most_tickets: usize,
    /// The most threads the `lockbydir run` process had while its tasks waited.
    pub most_threads: u64,
    /// From the start of the process to every task's ticket in the queue (ms).
    pub queued_ms: f64,
    /// The process's CPU time while every task waited (`Plan::async_wait_ms` after all had
    /// queued), as a share of one core (%).
    pub waiting_cpu_pct: f64,
    /// From the benchmark's release to the process's end, every task having held the lock
    /// once (ms).
    pub drained_ms: f64,
}

/// Measure one task alone, then `plan.async_waits`, in `base`.
pub fn measure(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Vec<AsyncWaitsRow>> {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("bench: skipped the async waits: no /proc to count threads in");
        return Ok(Vec::new());
    }
    let plugin = base.join("tasks.wasm");
    std::fs::write(&plugin, lockbydir::guests::TASKS_PLUGIN)?;
    let mut rows = Vec::new();
    for tasks in [1, plan.async_waits] {
        eprintln!(
            "bench: {}: {tasks} plugin task(s) waiting at once",
            base.display()
        );
        rows.push(one(
            setup,
            &plugin,
            &base.join(format!("async-{tasks}")),
            tasks,
            plan.async_wait_ms,
        )?);
    }
    Ok(rows)
}

fn one(
    setup: &Setup,
    plugin: &Path,
    dir: &Path,
    tasks: usize,
    wait_ms: u64,
) -> anyhow::Result<AsyncWaitsRow> {
    let (locks, work) = (dir.join("locks"), dir.join("work"));
    std::fs::create_dir_all(&locks)?;
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("counter"), "0")?;
    let mut holder = Place::LockDir(locks.clone()).open(setup.runner.runtime())?;
    let options = Options {
        lease_ms: Some(600_000),
        holder: Some("bench".into()),
        ..Options::default()
    };
    let lock = holder.open("shared", &options)?;
    let AcquireOutcome::Acquired(_) = holder.acquire(lock)? else {
        bail!(
            "the benchmark could not take lock `shared` in {}",
            locks.display()
        );
    };
    let mut cmd = lockbydir_command(setup)?;
    cmd.arg("--locks")
        .arg(&locks)
        .args([
            "run",
            "--quiet",
            "--max-handles",
            &tasks.to_string(),
            "--dir",
        ])
        .arg(format!("{}::/work", work.display()))
        .arg(plugin)
        .args([
            "--",
            "count",
            "--lock",
            "shared",
            "--counter",
            "/work/counter",
        ])
        .args(["--log", "/work/log", "--waits", &tasks.to_string()]);
    let started = Instant::now();
    let mut child = cmd.spawn().context("start lockbydir run")?;
    let queue = locks.join("shared.queue");
    let tickets = || std::fs::read_dir(&queue).map_or(0, |d| d.count());
    let threads = |pid: u32| -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Threads:"))?;
        line.trim().parse().ok()
    };
    let (mut most_tickets, mut most_threads) = (0, 0);
    let sample = |most_tickets: &mut usize, most_threads: &mut u64| {
        *most_tickets = (*most_tickets).max(tickets());
        *most_threads = (*most_threads).max(threads(child.id()).unwrap_or(0));
    };
    while most_tickets < tasks {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("only {most_tickets} of {tasks} tasks queued within 120 s");
        }
        sample(&mut most_tickets, &mut most_threads);
        std::thread::sleep(Duration::from_millis(5));
    }
    let queued_ms = started.elapsed().as_secs_f64() * 1e3;
    // A while longer, all of them waiting (and renewing their tickets): the CPU it takes.
    let (waiting_from, cpu_from) = (Instant::now(), sys::process_cpu_ns(child.id()));
    let until = waiting_from + Duration::from_millis(wait_ms);
    while Instant::now() < until {
        sample(&mut most_tickets, &mut most_threads);
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu_ns = sys::process_cpu_ns(child.id()).saturating_sub(cpu_from);
    let waiting_cpu_pct = 100.0 * cpu_ns as f64 / waiting_from.elapsed().as_nanos().max(1) as f64;
    let released = Instant::now();
    holder.release(lock)?;
    let status = child.wait()?;
    let drained_ms = released.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        bail!("the tasks plugin failed ({status})");
    }
    let counted = std::fs::read_to_string(work.join("counter"))?;
    if counted.trim() != tasks.to_string() {
        bail!("{tasks} tasks counted {counted:?}");
    }
    Ok(AsyncWaitsRow {
        tasks,
        most_tickets,
        most_threads,
        queued_ms,
        waiting_cpu_pct,
        drained_ms,
    })
}
