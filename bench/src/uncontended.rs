//! Uncontended acquire + release, per operation: the bare mkdir+rmdir floor (which is also
//! the seed's lock, uncontended), kernel flock, the protocol compiled natively, the lock
//! component called from the host, and a plugin calling through the host into the lock
//! component, with the host's wake-ups and without (`LOCKBYDIR_NO_WAKEUPS=1`).

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use lockbydir::backend::{Backend, LockDirBackend};
use lockbydir::types as wit;
use lockbydir::{LockId, Place, PluginConfig};
use lockbydir_protocol::{Lock, Options, Outcome, StdEnv, StdFs};
use serde::Serialize;

use super::contenders::Setup;
use super::plan::Plan;
use super::stats::median_by;
use super::sys;
use super::wakeups;

/// Nanoseconds per acquire + release pair, medians over the runs, and the ratios between
/// them (each the median of the ratios within one run).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Uncontended {
    pub runs: usize,
    /// `mkdir` + `rmdir` of one directory: the floor, and the seed-like lock uncontended.
    pub mkdir_rmdir_ns: f64,
    /// `flock(LOCK_EX)` + `flock(LOCK_UN)` on an open file.
    pub flock_ns: f64,
    /// `lockbydir_protocol::Lock` try_acquire + release, natively.
    pub protocol_ns: f64,
    /// `LockDirBackend` try_acquire + release: the lock component called from the host.
    pub service_ns: f64,
    /// The bench plugin's try-acquire + release through the host into the lock component.
    pub plugin_ns: f64,
    /// The same with `LOCKBYDIR_NO_WAKEUPS=1`: the polling fallback.
    pub plugin_polling_ns: f64,
    pub plugin_over_protocol: f64,
    pub plugin_polling_over_protocol: f64,
    pub plugin_over_mkdir_rmdir: f64,
    pub plugin_over_service: f64,
    pub service_over_protocol: f64,
    pub protocol_over_mkdir_rmdir: f64,
    pub protocol_over_flock: f64,
}

/// One run's figures (ns per pair).
#[derive(Clone, Copy, Default)]
struct Run {
    mkdir: f64,
    flock: f64,
    protocol: f64,
    service: f64,
    plugin: f64,
    plugin_polling: f64,
}

/// Measure in `base` (a scratch directory on the filesystem under test).
pub fn measure(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Uncontended> {
    eprintln!("bench: {}: uncontended", base.display());
    let locks = base.join("uncontended");
    let work = base.join("uncontended-work");
    std::fs::create_dir_all(&locks)?;
    std::fs::create_dir_all(&work)?;
    let ops = plan.uncontended_ops;
    let fast_ops = ops * plan.fast_factor;
    let mut service = LockDirBackend::new(setup.runner.runtime(), &locks)?;
    let handle = service.open("service", &wit_options())?;
    let flock_file = File::create(locks.join("flock.lock"))?;
    let mut protocol = Lock::new(
        StdFs::new(&locks),
        StdEnv::new(),
        "protocol",
        protocol_options(),
    )?;
    let mut runs = Vec::new();
    for _ in 0..plan.uncontended_runs {
        runs.push(Run {
            mkdir: per_op(fast_ops, |n| mkdir_rmdir(&locks.join("floor"), n))?,
            flock: per_op(fast_ops, |n| flock_pairs(&flock_file, n))?,
            protocol: per_op(ops, |n| protocol_pairs(&mut protocol, n))?,
            service: per_op(ops, |n| locks_pairs(&mut service, handle, n))?,
            plugin: wakeups::in_process(false, || {
                plugin_pairs(
                    setup.runner,
                    setup,
                    Place::LockDir(locks.clone()),
                    &work,
                    ops,
                )
            })?,
            plugin_polling: wakeups::in_process(true, || {
                plugin_pairs(
                    setup.runner,
                    setup,
                    Place::LockDir(locks.clone()),
                    &work,
                    ops,
                )
            })?,
        });
    }
    service.close(handle)?;
    let m = |f: fn(&Run) -> f64| median_by(&runs, f);
    Ok(Uncontended {
        runs: runs.len(),
        mkdir_rmdir_ns: m(|r| r.mkdir),
        flock_ns: m(|r| r.flock),
        protocol_ns: m(|r| r.protocol),
        service_ns: m(|r| r.service),
        plugin_ns: m(|r| r.plugin),
        plugin_polling_ns: m(|r| r.plugin_polling),
        plugin_over_protocol: m(|r| r.plugin / r.protocol),
        plugin_polling_over_protocol: m(|r| r.plugin_polling / r.protocol),
        plugin_over_mkdir_rmdir: m(|r| r.plugin / r.mkdir),
        plugin_over_service: m(|r| r.plugin / r.service),
        service_over_protocol: m(|r| r.service / r.protocol),
        protocol_over_mkdir_rmdir: m(|r| r.protocol / r.mkdir),
        protocol_over_flock: m(|r| r.protocol / r.flock),
    })
}

/// The options every lockbydir variant uses (as the example plugins do).
fn protocol_options() -> Options {
    Options {
        timeout_ms: 30_000,
        holder: "bench".into(),
        ..Options::default()
    }
}

pub fn wit_options() -> wit::Options {
    let o = protocol_options();
    wit::Options {
        lease_ms: Some(o.timeout_ms),
        holder: Some(o.holder),
        ..wit::Options::default()
    }
}

/// Run `pairs(n / 10)` untimed, then time `pairs(n)`; ns per pair.
pub fn per_op(n: u64, mut pairs: impl FnMut(u64) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    pairs(n / 10)?;
    let start = Instant::now();
    pairs(n)?;
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

fn mkdir_rmdir(path: &Path, n: u64) -> anyhow::Result<()> {
    for _ in 0..n {
        std::fs::create_dir(path).with_context(|| format!("mkdir {}", path.display()))?;
        std::fs::remove_dir(path).with_context(|| format!("rmdir {}", path.display()))?;
    }
    Ok(())
}

pub fn flock_pairs(file: &File, n: u64) -> anyhow::Result<()> {
    for _ in 0..n {
        sys::flock(file, true)?;
        sys::flock(file, false)?;
    }
    Ok(())
}

fn protocol_pairs(lock: &mut Lock<StdFs, StdEnv>, n: u64) -> anyhow::Result<()> {
    for _ in 0..n {
        let Outcome::Acquired(_) = lock.try_acquire()? else {
            anyhow::bail!("the uncontended protocol lock was busy");
        };
        lock.release()?;
    }
    Ok(())
}

/// A backend's try_acquire + release, `n` times.
pub fn locks_pairs(locks: &mut dyn Backend, handle: LockId, n: u64) -> anyhow::Result<()> {
    for _ in 0..n {
        let wit::AcquireOutcome::Acquired(_) = locks.try_acquire(handle)? else {
            anyhow::bail!("the uncontended lock on {} was busy", locks.place());
        };
        locks.release(handle)?;
    }
    Ok(())
}

/// The bench plugin run by `runner` times its own loop (after its own warm-up); ns per pair.
pub fn plugin_pairs(
    runner: &lockbydir::PluginRunner,
    setup: &Setup,
    place: Place,
    work: &Path,
    n: u64,
) -> anyhow::Result<f64> {
    let config = PluginConfig {
        name: "bench-loop".into(),
        args: [
            "--mode",
            "loop",
            "--lock",
            "plugin",
            "--out",
            "/work/loop.out",
            "--iterations",
        ]
        .map(String::from)
        .into_iter()
        .chain([n.to_string()])
        .collect(),
        dirs: vec![(work.to_owned(), "/work".into())],
        ..PluginConfig::new("bench-loop", place)
    };
    let code = runner.run(setup.plugin, &config)?;
    anyhow::ensure!(code == 0, "the bench plugin exited with {code}");
    let text = std::fs::read_to_string(work.join("loop.out"))?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(elapsed)), Some(Ok(iterations))) if iterations > 0.0 => Ok(elapsed / iterations),
        _ => anyhow::bail!("the bench plugin wrote {text:?}"),
    }
}
