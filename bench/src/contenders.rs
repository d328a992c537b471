//! One contention measurement: N contenders started on threads of this host or as separate
//! processes, all let go at once through a go file, their CPU time counted from the go to
//! their end, their logs read back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use lockbydir::{Place, PluginConfig, PluginRunner};
use wasmtime::component::Component;

pub use super::kind::Kind;
use super::sys::{self, now_ns};
use super::syscalls;
use super::wakeups;
use super::worker::{self, ContendSpec, HostHold, NativeLock};
use crate::Program;

/// What every measurement in one benchmark run shares.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// The global options (passed on to child processes).
    pub global: &'a dyn Program,
    /// Runs the bench plugin on threads.
    pub runner: &'a PluginRunner,
    /// The bench plugin, compiled.
    pub plugin: &'a Component,
    /// The bench plugin as a file, for child processes.
    pub plugin_file: &'a Path,
    /// The etcd cluster's client URLs, comma-separated, for [`Kind::EtcdPluginProcs`].
    pub etcd_endpoints: Option<&'a str>,
}

/// One measurement: who contends, where, and how.
#[derive(Clone, Debug)]
pub struct RoundSpec {
    pub kind: Kind,
    /// How many contenders.
    pub contenders: usize,
    /// The lock directory (fresh).
    pub lock_dir: PathBuf,
    /// The scratch directory (fresh): `ready/`, `go`, logs.
    pub work: PathBuf,
    /// Hold time (µs).
    pub hold_us: u64,
    /// Hold asleep instead of busy (plugins only).
    pub hold_sleep: bool,
    /// Patience of each acquire (ms).
    pub patience_ms: u64,
    /// Acquisitions per contender at most (0: loop until the window ends).
    pub rounds: u64,
    /// How long the contenders loop (ms).
    pub window_ms: u64,
    /// How often contenders look for the go file (ms).
    pub go_poll_ms: u64,
    /// The benchmark holds the lock itself from before the go to the end of the window, so
    /// the contenders only wait.
    pub host_holds: bool,
    /// Processes only: count their system calls from just before the go until they exit
    /// (`strace -c -f` attached to each), its summary written to this file.
    pub strace: Option<PathBuf>,
}

/// What differs between the series of rounds that `contended` and `waiting` measure.
pub struct Series<'a> {
    /// Names the series in progress lines and scratch directories (`contend`, `wait`).
    pub label: &'a str,
    /// The contender counts and kinds to measure, in order.
    pub configs: &'a [(usize, Kind)],
    /// How many times each configuration is measured.
    pub runs: usize,
    /// Acquisitions per contender at most (0: loop until the window ends).
    pub rounds: u64,
    /// How long each round lasts (ms).
    pub window_ms: u64,
    /// Whether the benchmark holds the lock through the window (see [`RoundSpec::host_holds`]).
    pub host_holds: bool,
}

/// Run every configuration of `series`, `series.runs` times, interleaved (each run goes
/// through every configuration once), each round in a scratch directory of its own under
/// `base`. Each round's output goes to `record` with its contender count and kind.
pub fn run_interleaved(
    setup: &Setup,
    plan: &super::plan::Plan,
    base: &std::path::Path,
    series: &Series,
    mut record: impl FnMut(usize, Kind, &RoundOutput),
) -> anyhow::Result<()> {
    for run in 0..series.runs {
        for &(n, kind) in series.configs {
            {
                eprintln!(
                    "bench: {}: {} x{n} ({}), run {}/{}",
                    base.display(),
                    kind.name(),
                    series.label,
                    run + 1,
                    series.runs
                );
                let dir = base.join(format!("{}-{}-{n}-{run}", series.label, kind.name()));
                let spec = RoundSpec {
                    kind,
                    contenders: n,
                    lock_dir: dir.join("locks"),
                    work: dir.join("work"),
                    hold_us: plan.hold_us,
                    hold_sleep: false,
                    patience_ms: u64::MAX,
                    rounds: series.rounds,
                    window_ms: series.window_ms,
                    go_poll_ms: 1,
                    host_holds: series.host_holds,
                    strace: None,
                };
                let out = run_round(setup, &spec)?;
                record(n, kind, &out);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    Ok(())
}

/// One attempt of one contender, in wall-clock ns.
#[derive(Clone, Copy, Debug)]
pub enum Record {
    /// Asked at `asked`, got it at `got`, started releasing at `releasing`, done at `released`.
    Acquired {
        asked: u64,
        got: u64,
        releasing: u64,
        released: u64,
    },
    /// Asked at `asked`, gave up at `gave_up`.
    GaveUp { asked: u64, gave_up: u64 },
}

/// One contender's log and the CPU time it used from the go to its end.
#[derive(Debug)]
pub struct Contender {
    pub records: Vec<Record>,
    pub cpu_ns: u64,
}

/// What one measurement produced.
#[derive(Debug)]
pub struct RoundOutput {
    /// When the contenders were let go, and when they were told to stop (ns since the epoch).
    pub go_ns: u64,
    pub until_ns: u64,
    pub contenders: Vec<Contender>,
    /// If the benchmark held the lock itself: each contender's CPU time from the go to just
    /// before the benchmark let go (ns), that is, what its waiting alone cost.
    pub cpu_waiting_ns: Option<Vec<u64>>,
}

/// When the contenders were let go and told to stop, their CPU times at the go, and (if the
/// benchmark held the lock) their CPU times just before it let go.
struct Started {
    go: u64,
    until: u64,
    at_go: Vec<u64>,
    at_release: Option<Vec<u64>>,
}

/// What the contenders of one round did: [`Started`], and each one's CPU time from the go to
/// its end.
struct Ran {
    started: Started,
    cpu: Vec<u64>,
}

/// How long contenders may take to get ready before the measurement is abandoned.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Run one measurement.
pub fn run_round(setup: &Setup, spec: &RoundSpec) -> anyhow::Result<RoundOutput> {
    std::fs::create_dir_all(spec.work.join("ready"))?;
    std::fs::create_dir_all(&spec.lock_dir)?;
    let labels: Vec<String> = (0..spec.contenders).map(|i| format!("c{i:03}")).collect();
    let hold = if spec.host_holds {
        Some(HostHold::take(spec.kind.native_lock(), &spec.lock_dir)?)
    } else {
        None
    };
    let ran = if spec.kind.is_process() {
        run_processes(setup, spec, &labels, hold)?
    } else {
        wakeups::in_process(spec.kind.polling(), || {
            run_threads(setup, spec, &labels, hold)
        })?
    };
    let Started {
        go,
        until,
        at_go,
        at_release,
    } = ran.started;
    let cpu_waiting_ns = at_release.map(|r| {
        r.iter()
            .zip(&at_go)
            .map(|(r, g)| r.saturating_sub(*g))
            .collect()
    });
    let contenders = labels
        .iter()
        .zip(ran.cpu)
        .map(|(label, cpu_ns)| {
            let path = spec.work.join(format!("{label}.log"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("contender {label} left no log {}", path.display()))?;
            Ok(Contender {
                records: parse_log(&text)?,
                cpu_ns,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(RoundOutput {
        go_ns: go,
        until_ns: until,
        contenders,
        cpu_waiting_ns,
    })
}

/// Contenders on threads.
fn run_threads(
    setup: &Setup,
    spec: &RoundSpec,
    labels: &[String],
    hold: Option<HostHold>,
) -> anyhow::Result<Ran> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let tasks: Vec<_> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let tx = tx.clone();
                scope.spawn(move || -> anyhow::Result<u64> {
                    let tid = sys::gettid();
                    let _ = tx.send((i, tid));
                    drop(tx);
                    run_on_thread(setup, spec, label)?;
                    Ok(sys::thread_cpu_ns(tid))
                })
            })
            .collect();
        drop(tx);
        let mut tids = vec![0; labels.len()];
        for (i, tid) in rx.iter().take(labels.len()) {
            tids[i] = tid;
        }
        let alive = || tasks.iter().all(|t| !t.is_finished());
        let cpu_now = || tids.iter().map(|&t| sys::thread_cpu_ns(t)).collect();
        let started = let_go(spec, alive, cpu_now, hold, || Ok(()));
        let mut ends = Vec::new();
        let mut failure = None;
        for (task, label) in tasks.into_iter().zip(labels) {
            match task.join() {
                Ok(Ok(cpu)) => ends.push(cpu),
                Ok(Err(e)) => failure = Some(e.context(format!("contender {label}"))),
                Err(_) => failure = Some(anyhow::anyhow!("contender {label} panicked")),
            }
        }
        let started = started?;
        if let Some(e) = failure {
            return Err(e);
        }
        let cpu = ends.iter().zip(&started.at_go);
        let cpu = cpu.map(|(e, g)| e.saturating_sub(*g)).collect();
        Ok(Ran { started, cpu })
    })
}

/// One contender on this thread.
fn run_on_thread(setup: &Setup, spec: &RoundSpec, label: &str) -> anyhow::Result<()> {
    let native = |kind| worker::run(&native_spec(spec, kind, label));
    match spec.kind {
        Kind::PluginThreads => {
            let config = PluginConfig {
                name: label.to_owned(),
                args: plugin_args(spec, label),
                dirs: vec![(spec.work.clone(), "/work".to_owned())],
                ..PluginConfig::new(label, Place::LockDir(spec.lock_dir.clone()))
            };
            let code = setup.runner.run(setup.plugin, &config)?;
            anyhow::ensure!(code == 0, "the bench plugin exited with {code}");
            Ok(())
        }
        Kind::PluginThreadsPolling => run_on_thread(
            setup,
            &RoundSpec {
                kind: Kind::PluginThreads,
                ..spec.clone()
            },
            label,
        ),
        Kind::ProtocolThreads => native(NativeLock::Protocol),
        Kind::FlockThreads => {
            // flock's patience is a per-process timer (see `flock.rs`).
            anyhow::ensure!(
                spec.patience_ms == u64::MAX,
                "flock threads have no patience"
            );
            native(NativeLock::Flock)
        }
        other => bail!("{} is not run on threads", other.name()),
    }
}

/// Contenders as child processes.
fn run_processes(
    setup: &Setup,
    spec: &RoundSpec,
    labels: &[String],
    hold: Option<HostHold>,
) -> anyhow::Result<Ran> {
    let mut children: Vec<Child> = Vec::new();
    for label in labels {
        let mut cmd = process_command(setup, spec, label)?;
        match cmd.spawn() {
            Ok(child) => children.push(child),
            Err(e) => {
                // Let the ones already started go (with nothing to do) before failing.
                write_go(&spec.work, 0, 0)?;
                for child in &children {
                    let _ = sys::wait_child(child.id());
                }
                return Err(e).context("start a contender process");
            }
        }
    }
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let alive = || pids.iter().all(|&p| !is_zombie(p));
    let cpu_now = || pids.iter().map(|&p| sys::process_cpu_ns(p)).collect();
    let mut tracer = None;
    let started = let_go(spec, alive, cpu_now, hold, || {
        if let Some(out) = &spec.strace {
            tracer = Some(syscalls::attach(&pids, out)?);
        }
        Ok(())
    });
    // A traced round that outlives its window by a minute is stuck (see `Watchdog`).
    let watchdog = tracer.as_ref().map(|t| {
        let limit = Duration::from_millis(spec.window_ms) + Duration::from_secs(60);
        syscalls::Watchdog::start(t.id(), limit)
    });
    let mut ends = Vec::new();
    let mut failure = None;
    for (pid, label) in pids.iter().zip(labels) {
        let (code, cpu) = sys::wait_child(*pid)?;
        if code != 0 {
            failure = Some(anyhow::anyhow!(
                "contender process {label} exited with {code}"
            ));
        }
        ends.push(cpu);
    }
    if let Some(mut tracer) = tracer {
        // It ends when the last of the processes it follows has exited.
        let _ = tracer.wait();
    }
    if let Some(watchdog) = watchdog {
        watchdog.done();
    }
    let started = started?;
    if let Some(e) = failure {
        return Err(e);
    }
    let cpu = ends.iter().zip(&started.at_go);
    let cpu = cpu.map(|(e, g)| e.saturating_sub(*g)).collect();
    Ok(Ran { started, cpu })
}

/// This `lockbydir` as a child process, with the global options passed on (no stdin, no
/// stdout).
pub fn lockbydir_command(setup: &Setup) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("find the lockbydir executable")?;
    let mut cmd = Command::new(exe);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    if setup.global.no_cache() {
        cmd.arg("--no-cache");
    }
    if let Some(component) = setup.global.lock_component() {
        cmd.arg("--lock-component").arg(component);
    }
    Ok(cmd)
}

fn process_command(setup: &Setup, spec: &RoundSpec, label: &str) -> anyhow::Result<Command> {
    let mut cmd = lockbydir_command(setup)?;
    wakeups::for_child(&mut cmd, spec.kind.polling());
    match spec.kind {
        Kind::PluginProcs | Kind::PluginProcsPolling => {
            cmd.arg("--locks")
                .arg(&spec.lock_dir)
                .args(["run", "--quiet", "--name", label, "--dir"])
                .arg(format!("{}::/work", spec.work.display()))
                .arg(setup.plugin_file)
                .arg("--")
                .args(plugin_args(spec, label));
        }
        Kind::EtcdPluginProcs => {
            let endpoints = setup
                .etcd_endpoints
                .context("etcd contenders without etcd endpoints")?;
            cmd.args(["run", "--backend", "etcd", "--etcd-endpoints", endpoints])
                .args(["--quiet", "--name", label, "--dir"])
                .arg(format!("{}::/work", spec.work.display()))
                .arg(setup.plugin_file)
                .arg("--")
                .args(plugin_args(spec, label));
        }
        Kind::FlockProcs
        | Kind::Seed5Procs
        | Kind::Seed30Procs
        | Kind::ProtocolProcsFifo
        | Kind::ProtocolProcsBounded => {
            let lock = spec.kind.native_lock();
            let w = native_spec(spec, lock, label);
            let name = lock.to_possible_value().map(|v| v.get_name().to_owned());
            cmd.args(["bench", "worker", "--kind"])
                .arg(name.unwrap_or_default())
                .arg("--lock-dir")
                .arg(&w.lock_dir)
                .arg("--work")
                .arg(&w.work)
                .args(["--label", label])
                .args(["--hold-us", &w.hold_us.to_string()])
                .args(["--patience-ms", &w.patience_ms.to_string()])
                .args(["--rounds", &w.rounds.to_string()])
                .args(["--go-poll-ms", &w.go_poll_ms.to_string()])
                .args(["--poll-ms", &w.poll_ms.to_string()]);
            if w.hold_sleep {
                cmd.arg("--hold-sleep");
            }
        }
        other => bail!("{} is not run as processes", other.name()),
    }
    Ok(cmd)
}

/// Whether process `pid` has exited (and waits to be reaped).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Wait until every contender is ready, read their CPU times, then write the go file; if
/// the benchmark holds the lock itself, read their CPU times again at the end of the window
/// and release it.
fn let_go(
    spec: &RoundSpec,
    alive: impl Fn() -> bool,
    cpu_now: impl Fn() -> Vec<u64>,
    hold: Option<HostHold>,
    before_go: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Started> {
    wait_ready(&spec.work, spec.contenders, alive)
        .with_context(|| format!("{} contenders", spec.kind.name()))?;
    if let Err(e) = before_go() {
        write_go(&spec.work, 0, 0)?;
        return Err(e);
    }
    let at_go = cpu_now();
    let go = now_ns() as u64;
    let until = go + spec.window_ms * 1_000_000;
    write_go(&spec.work, go, until)?;
    let mut at_release = None;
    if let Some(hold) = hold {
        let left = until.saturating_sub(now_ns() as u64);
        std::thread::sleep(Duration::from_nanos(left));
        at_release = Some(cpu_now());
        hold.release()?;
    }
    Ok(Started {
        go,
        until,
        at_go,
        at_release,
    })
}

/// Wait until `n` contenders have created their file in `<work>/ready`. If one dies first
/// (`alive` turns false) or this takes too long, the others are let go with nothing to do,
/// and this fails.
pub fn wait_ready(work: &Path, n: usize, alive: impl Fn() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let ready_dir = work.join("ready");
    loop {
        let ready = std::fs::read_dir(&ready_dir)?.count();
        if ready >= n {
            return Ok(());
        }
        if !alive() || started.elapsed() > READY_TIMEOUT {
            write_go(work, 0, 0)?;
            bail!("only {ready} of {n} contenders got ready");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Write `<work>/go` at once (through a rename): `<go-ns> <until-ns>`.
pub fn write_go(work: &Path, go: u64, until: u64) -> anyhow::Result<()> {
    let tmp = work.join("go.tmp");
    std::fs::write(&tmp, format!("{go} {until}\n"))?;
    std::fs::rename(&tmp, work.join("go"))?;
    Ok(())
}

/// The bench plugin's arguments for contending.
fn plugin_args(spec: &RoundSpec, label: &str) -> Vec<String> {
    let mut args: Vec<String> = ["--mode", "contend", "--lock", worker::LOCK_NAME, "--label"]
        .map(String::from)
        .into();
    args.push(label.to_owned());
    args.extend(["--work".to_owned(), "/work".to_owned()]);
    for (key, value) in [
        ("--hold-us", spec.hold_us),
        ("--hold-sleep", u64::from(spec.hold_sleep)),
        ("--patience-ms", spec.patience_ms),
        ("--rounds", spec.rounds),
        ("--go-poll-ms", spec.go_poll_ms),
    ] {
        args.extend([key.to_owned(), value.to_string()]);
    }
    args
}

fn native_spec(spec: &RoundSpec, kind: NativeLock, label: &str) -> ContendSpec {
    ContendSpec {
        kind,
        lock_dir: spec.lock_dir.clone(),
        work: spec.work.clone(),
        label: label.to_owned(),
        hold_us: spec.hold_us,
        patience_ms: spec.patience_ms,
        poll_ms: spec.kind.seed_poll_ms(),
        hold_sleep: spec.hold_sleep,
        rounds: spec.rounds,
        go_poll_ms: spec.go_poll_ms,
    }
}

/// Parse a contender's log (`acq a g r d` / `gaveup a g` lines).
fn parse_log(text: &str) -> anyhow::Result<Vec<Record>> {
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| -> anyhow::Result<u64> {
                f.get(i)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("bad log line {line:?}"))
            };
            match f.first() {
                Some(&"acq") => Ok(Record::Acquired {
                    asked: n(1)?,
                    got: n(2)?,
                    releasing: n(3)?,
                    released: n(4)?,
                }),
                Some(&"gaveup") => Ok(Record::GaveUp {
                    asked: n(1)?,
                    gave_up: n(2)?,
                }),
                _ => bail!("bad log line {line:?}"),
            }
        })
        .collect()
}
