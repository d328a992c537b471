//! `lockbydir bench`: measures lockbydir (with the host's wake-ups and in its polling
//! fallback) against the floor (bare mkdir+rmdir), the protocol compiled natively, the
//! kernel's flock and the seed's mkdir/rmdir lock: uncontended operations, contended
//! handover, waiting, start-up, and the seed's massive hammering. Prints Markdown tables,
//! writes the same numbers as JSON and the handover distribution as an SVG picture.
//!
//! A library the `lockbydir` command calls (`lockbydir bench`), so users measure their own
//! machines and clusters with it: the command parses [`BenchArgs`] and gives [`bench`] what
//! it needs of the program through [`Program`]. Child processes are started from the running
//! executable (`lockbydir run`, `lockbydir exec`, `lockbydir bench worker`).

mod async_waits;
mod contended;
mod contenders;
mod etcd;
mod flock;
mod hammer;
mod handover;
mod kind;
mod plan;
mod program;
mod scratch;
mod seed;
mod startup;
mod stats;
mod svg;
mod sys;
mod syscalls;
mod table;
mod targets;
mod uncontended;
mod waiting;
mod wakeups;
mod worker;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use lockbydir::{PluginRunner, guests};
use serde::Serialize;

use contended::ContendedRow;
use contenders::Setup;
use hammer::Hammer;
use plan::Plan;
pub use program::Program;
use scratch::ScratchDir;
use startup::Startup;
use targets::Target;
use uncontended::Uncontended;
use waiting::WaitingRow;

/// Measure lockbydir against bare mkdir+rmdir, the protocol compiled natively, flock and a
/// plain mkdir lock that polls.
///
/// Uncontended acquire+release, contended handover and waiting (threads and processes),
/// start-up, and a hammering (many contenders, one try each), on each directory given (tmpfs and disk by
/// default); lockbydir with the host's wake-ups and without (LOCKBYDIR_NO_WAKEUPS=1). Every
/// figure is a median over repeated runs; every comparison is a ratio from the same run.
/// Benchmarks on a busy machine are noisy: the load average is reported with the numbers.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, disable_help_subcommand = true)]
pub struct BenchArgs {
    /// Measure in DIR (a scratch directory is made in it and removed afterwards); repeat for
    /// several [default: /dev/shm and the current directory].
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Also write the numbers as JSON to FILE (and the picture next to it, as with --svg,
    /// FILE with the extension .svg, unless --svg says where).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the distribution of handovers to a different contender (8 looping processes:
    /// lockbydir with and without wake-ups, flock, a polling mkdir lock) as an SVG picture to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// About a minute on 2 cores, instead of several minutes.
    #[arg(long)]
    quick: bool,
    /// A few seconds, only to show that every part runs (the numbers mean little).
    #[arg(long)]
    smoke: bool,
    /// Measure the etcd backend on this cluster (client URLs, comma-separated; it gets locks
    /// named `bench-*`) [default: a single etcd member started from the `etcd` on PATH, on
    /// loopback with its data on tmpfs, and stopped afterwards; needs `--features etcd`].
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    etcd_endpoints: Vec<String>,
    /// Measure only the etcd backend next to lockdir and flock (seconds, not minutes); the
    /// same as `--only etcd`.
    #[arg(long)]
    etcd_only: bool,
    /// Measure only these parts (comma-separated or repeated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART,...")]
    only: Vec<Part>,
    /// The contender counts of the contended handover, instead of the plan's (2, 8, 32 and
    /// 200 in quick and full runs; the targets are judged at 8 and 32).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    contenders: Vec<usize>,
    #[command(subcommand)]
    worker: Option<Internal>,
}

/// The parts of a benchmark run, each a table of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Start-up: compiling, starting from the cache, one more instance.
    Startup,
    /// Uncontended acquire + release.
    Uncontended,
    /// Contended handover with 2 to 200 looping contenders.
    Contended,
    /// Waiting CPU behind a long hold.
    Waiting,
    /// The last of several waiters after a short hold.
    AfterHold,
    /// Massive hammering: many contenders, one try each.
    Hammer,
    /// A WASI 0.3 plugin's tasks waiting at once.
    AsyncWaits,
    /// The etcd backend next to lockdir and flock.
    Etcd,
}

impl BenchArgs {
    /// Whether `part` is measured in this run.
    fn wants(&self, part: Part) -> bool {
        match self.etcd_only {
            true => part == Part::Etcd,
            false => self.only.is_empty() || self.only.contains(&part),
        }
    }
}

/// Commands `bench` runs itself.
#[derive(Subcommand, Debug)]
enum Internal {
    /// One native contender in a process of its own.
    #[command(hide = true)]
    Worker(worker::ContendSpec),
}

/// Everything measured, as written to `--json`.
#[derive(Serialize)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    pub mode: &'static str,
    pub machine: Machine,
    pub plan: Plan,
    /// Start-up (not measured with `--etcd-only`).
    pub startup: Option<Startup>,
    pub dirs: Vec<DirReport>,
    /// The etcd backend next to lockdir and flock (on the first directory).
    pub etcd: etcd::EtcdReport,
    /// One WASI 0.3 plugin instance's tasks waiting at once (on the first directory).
    pub async_waits: Vec<async_waits::AsyncWaitsRow>,
    pub targets: Vec<Target>,
}

/// The machine, and how busy it was.
#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

/// The figures measured on one directory.
#[derive(Serialize)]
pub struct DirReport {
    pub path: String,
    pub fs: String,
    /// Not measured with `--only` without `uncontended`.
    pub uncontended: Option<Uncontended>,
    pub contended: Vec<ContendedRow>,
    /// Waiting CPU: one waiter process, and waiting plugins, behind a long hold.
    pub waiting: Vec<WaitingRow>,
    /// The last of several waiters after a short hold.
    pub after_hold: Vec<WaitingRow>,
    /// The seed's hammering, one row per kind (on the first directory only, unless the plan
    /// says every directory).
    pub hammer: Vec<Hammer>,
}

/// Run `lockbydir bench` with `args`; returns the exit code.
pub fn bench(global: &dyn Program, args: BenchArgs) -> anyhow::Result<u8> {
    if let Some(Internal::Worker(spec)) = &args.worker {
        worker::run(spec)?;
        return Ok(0);
    }
    let mut plan = if args.smoke {
        Plan::smoke()
    } else if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if !args.contenders.is_empty() {
        anyhow::ensure!(
            args.contenders.iter().all(|&n| n >= 2),
            "--contenders: each count must be at least 2 (a handover needs two)"
        );
        plan.contenders = args.contenders.clone();
    }
    let dirs = if args.dirs.is_empty() {
        default_dirs()
    } else {
        args.dirs.clone()
    };
    let loadavg_start = sys::loadavg();
    let runtime = global.runtime()?;
    let runner = PluginRunner::new(&runtime)?;
    let plugin = runtime.compile_plugin(guests::BENCH_PLUGIN, "the bench plugin")?;
    // A scratch directory inside each directory under test, removed at the end.
    let scratch: Vec<ScratchDir> = dirs
        .iter()
        .map(|d| ScratchDir::new(&global.absolute_dir(d, "--dir")?, "lockbydir-bench"))
        .collect::<anyhow::Result<_>>()?;
    let plugin_file = scratch[0].0.join("bench.wasm");
    std::fs::write(&plugin_file, guests::BENCH_PLUGIN)?;
    let setup = Setup {
        global,
        runner: &runner,
        plugin: &plugin,
        plugin_file: &plugin_file,
        etcd_endpoints: None,
    };

    let startup = match args.wants(Part::Startup) {
        true => Some(startup::measure(
            &setup,
            &plan,
            &scratch[0].0.join("startup"),
        )?),
        false => None,
    };
    let per_dir = [
        Part::Uncontended,
        Part::Contended,
        Part::Waiting,
        Part::AfterHold,
        Part::Hammer,
    ];
    let any_per_dir = per_dir.iter().any(|&p| args.wants(p));
    let mut reports = Vec::new();
    for (i, s) in scratch.iter().enumerate().filter(|_| any_per_dir) {
        let base = &s.0;
        let uncontended = match args.wants(Part::Uncontended) {
            true => Some(uncontended::measure(&setup, &plan, base)?),
            false => None,
        };
        let contended = match args.wants(Part::Contended) {
            true => contended::measure(&setup, &plan, base)?,
            false => Vec::new(),
        };
        let waiting = match args.wants(Part::Waiting) {
            true => waiting::measure_cpu(&setup, &plan, base)?,
            false => Vec::new(),
        };
        let after_hold = match args.wants(Part::AfterHold) {
            true => waiting::measure_after_hold(&setup, &plan, base)?,
            false => Vec::new(),
        };
        let hammer = match args.wants(Part::Hammer) && (i == 0 || plan.hammer_every_dir) {
            true => hammer::measure(&setup, &plan, base)?,
            false => Vec::new(),
        };
        reports.push(DirReport {
            path: dirs[i].display().to_string(),
            fs: sys::fs_type(base)?,
            uncontended,
            contended,
            waiting,
            after_hold,
            hammer,
        });
    }
    let async_waits = match args.wants(Part::AsyncWaits) {
        true => async_waits::measure(&setup, &plan, &scratch[0].0)?,
        false => Vec::new(),
    };
    let etcd = match args.wants(Part::Etcd) {
        true => {
            let etcd_server = etcd::server(&args.etcd_endpoints, &scratch[0].0);
            etcd::measure(&setup, &plan, &scratch[0].0, etcd_server)?
        }
        false => etcd::EtcdReport {
            status: etcd::NOT_MEASURED.into(),
            ..etcd::EtcdReport::default()
        },
    };
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        mode: plan.mode,
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            loadavg_start,
            loadavg_end: sys::loadavg(),
        },
        targets: targets::judge(&reports, startup.as_ref(), plan.peer_contenders),
        plan,
        startup,
        dirs: reports,
        etcd,
        async_waits,
    };
    print!("{}", table::render(&report));
    if let Some(file) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(file, json + "\n").with_context(|| format!("write {}", file.display()))?;
    }
    let svg_file = args
        .svg
        .clone()
        .or_else(|| args.json.as_ref().map(|j| j.with_extension("svg")));
    if let Some(file) = svg_file {
        std::fs::write(&file, svg::render(&report))
            .with_context(|| format!("write {}", file.display()))?;
        eprintln!("bench: wrote {}", file.display());
    }
    Ok(0)
}

/// /dev/shm (if it is there) and the current directory.
fn default_dirs() -> Vec<PathBuf> {
    let shm = Path::new("/dev/shm");
    let mut dirs = Vec::new();
    if shm.is_dir() {
        dirs.push(shm.to_owned());
    }
    dirs.push(PathBuf::from("."));
    dirs
}
