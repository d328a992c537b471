//! `lockbydir exec`: run a native command while holding a lock (like flock(1)).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use lockbydir::backend::lockdir::MAX_CANCELLABLE_PATIENCE_MS;
use lockbydir::backend::{Backend, WaitMode};
use lockbydir::types::{AcquireOutcome, LockState, Options, ReleaseReport};
use lockbydir::{Error, LockId, escape, types};
use lockbydir_cli::duration::display_ms;
use lockbydir_cli::holder_label;

use super::backend::BackendArgs;
use super::exit::{self, Failure};
use super::flock_flags::FlockOnlyFlags;
use super::lock_failure::lock_failure;
use super::signals::{self, Caught};
use super::{Global, absolute_dir, duration_ms, process};

/// Exit code when the command succeeded but the lock was lost while it ran (EX_SOFTWARE).
pub const EXIT_COMPROMISED: u8 = exit::SOFTWARE;

/// What `exec --help` says about exit codes.
const EXIT_CODES: &str = "\
Exit codes:
  the command's own     its exit code; 128+N if it was killed by signal N
  64   usage: a bad flag or value, a bad lock name, --timeout (use --lease or --wait)
  65   the lockdir holds something lockbydir never writes (see lockbydir repair), or
       its fences are exhausted
  66   the lock directory does not exist or is not a directory
  69   the lock component cannot be loaded, or etcd (--backend etcd) cannot be reached
  70   the command succeeded but the lock was taken over while it ran (compromised), or an
       internal error
  71   the system refused something lockbydir needs (catching signals)
  74   a filesystem operation in the lock directory failed
  75   the lock stayed busy: -n, or --wait ran out (-E N changes it)
  77   the lock directory may not be used: not writable, or (the default one) owned by
       someone else or writable by others
  126  the command cannot be run (not executable)
  127  the command was not found
  128+N  interrupted by signal N (SIGINT, SIGTERM, SIGHUP) while waiting: the place in the
       queue was given up and the command never ran

Signals: while waiting, SIGINT, SIGTERM and SIGHUP end the wait (exit 128+N). While the
command runs they are passed on to it, and the lock is released after it exits. Signals that
were ignored when lockbydir started (nohup) stay ignored and are not passed on.

If lockbydir itself dies (even by SIGKILL), the command is killed with it (Linux: the
parent-death signal), so it never runs on without the lock. The command runs in a process
group of its own (unless lockbydir is in the foreground of a terminal); when it exits,
whatever it left running in that group is sent SIGTERM, then SIGKILL, before the lock is
released. Detach a daemon that should outlive the lock with setsid.";

/// Run COMMAND while holding a lock, refreshing it while the command runs and releasing it
/// afterwards (flock(1) for lockbydir locks).
///
/// LOCK is a name in the lock directory (--locks, LOCKBYDIR_DIR, or the per-user default), or
/// a path like flock's file: a LOCK containing `/` means the lock named after its last part,
/// in the directory before it, which must exist (`exec /var/lock/nightly -- ...`, `exec ./job
/// -- ...`). Such a path overrides LOCKBYDIR_DIR; with a --locks naming another directory it
/// is refused.
///
/// The command gets LOCKBYDIR_LOCK, LOCKBYDIR_DIR and LOCKBYDIR_FENCE (the fencing token).
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct ExecArgs {
    /// How long the lock stays valid without a refresh: a holder that stops refreshing it
    /// (frozen, or killed) can lose it to a waiter once this long has passed since its last
    /// refresh. lockbydir refreshes it every third of that while the command runs.
    #[arg(long, default_value = "30s", value_parser = duration_ms, value_name = "DUR")]
    lease: u64,
    /// How long to wait for the lock before giving up (0: one attempt; inf: forever). flock's
    /// -w/--timeout.
    #[arg(
        short = 'w',
        long = "wait",
        visible_alias = "patience",
        default_value = "inf",
        value_parser = duration_ms,
        value_name = "DUR",
        conflicts_with = "nonblock"
    )]
    wait: u64,
    /// Give up at once if the lock is busy (the same as --wait 0).
    #[arg(short = 'n', long, visible_alias = "nb")]
    nonblock: bool,
    /// The exit code when the lock stays busy.
    #[arg(short = 'E', long, value_name = "N", default_value_t = exit::TEMP_FAIL)]
    conflict_exit_code: u8,
    /// Run STRING with `sh -c` instead of COMMAND.
    #[arg(
        short = 'c',
        long = "command",
        value_name = "STRING",
        conflicts_with = "command"
    )]
    command_string: Option<String>,
    /// Who holds the lock, as shown to others [default: `PROGRAM (pid PID on HOST)`: the
    /// program's name (never its arguments), lockbydir's pid and the host name].
    #[arg(long, value_name = "LABEL")]
    holder: Option<String>,
    /// Say on stderr when the lock was acquired, and after how long.
    #[arg(long, conflicts_with = "quiet")]
    verbose: bool,
    /// Do not announce waiting on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Accepted for flock(1)'s sake: every lockbydir lock is exclusive.
    #[arg(short = 'x', short_alias = 'e', long, alias = "exclusive")]
    exclusive: bool,
    /// Refused: ambiguous (flock's --timeout is --wait; lockbydir's own used to be --lease).
    #[arg(long, hide = true, value_name = "DUR", allow_hyphen_values = true)]
    timeout: Option<String>,
    /// The lock: a NAME in the lock directory, or DIR/NAME.
    #[arg(value_name = "LOCK")]
    lock: String,
    /// The command and its arguments (after --).
    #[arg(
        last = true,
        value_name = "COMMAND",
        required_unless_present = "command_string"
    )]
    command: Vec<String>,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    flock_only: FlockOnlyFlags,
}

/// What the main loop hears about.
enum Event {
    Signal(Caught),
    Exited(std::io::Result<ExitStatus>),
}

pub fn exec(global: &Global, args: ExecArgs) -> anyhow::Result<u8> {
    args.flock_only.refuse()?;
    if let Some(t) = &args.timeout {
        return Err(Failure::error(
            exit::USAGE,
            format!(
                "--timeout {} is ambiguous, so it is refused: for how long to wait for the lock \
                 (flock's -w/--timeout) use --wait {0}; for how long the lock stays valid \
                 without a refresh (what lockbydir's --timeout used to mean) use --lease {0}",
                escape(t)
            ),
        ));
    }
    args.backend.refuse_lock_dir(global)?;
    let (lock_dir, name) = match args.backend.in_lock_dir() {
        true => lock_target(global, &args.lock)?,
        // A lock in a cluster is a name: no lock directory.
        false => (PathBuf::new(), args.lock.clone()),
    };
    let command: Vec<String> = match &args.command_string {
        Some(s) => vec!["sh".into(), "-c".into(), s.clone()],
        None => args.command.clone(),
    };
    let program = Path::new(&command[0])
        .file_name()
        .map_or_else(|| command[0].clone(), |p| p.to_string_lossy().into_owned());
    let patience = match args.nonblock {
        true => 0,
        // "Forever", as long as a signal can still end it (about 100 years).
        false => args.wait.min(MAX_CANCELLABLE_PATIENCE_MS),
    };
    let mut service = args.backend.open(global, &lock_dir)?;
    let place = service.place().to_owned();
    let lock_failure = |e: Error| match args.backend.in_lock_dir() {
        true => lock_failure(e, &lock_dir),
        false => e.into(),
    };

    // From here on a signal ends the wait: the lock component returns from `acquire`,
    // leaving the queue, and lockbydir exits 128 + the signal.
    let (tx, rx) = mpsc::channel();
    let waiting = Arc::new(AtomicBool::new(true));
    let canceller = service.waits().canceller;
    let still_waiting = Arc::clone(&waiting);
    signals::watch(tx.clone(), Event::Signal, move |_| {
        if still_waiting.load(Ordering::SeqCst) {
            canceller.cancel();
        }
    })
    .map_err(|e| Failure::error(exit::OS_ERR, format!("cannot catch signals: {e}")))?;

    let options = Options {
        lease_ms: Some(args.lease),
        wait_ms: Some(patience),
        holder: Some(args.holder.clone().unwrap_or_else(|| {
            holder_label::label(&program, std::process::id(), &holder_label::this_host())
        })),
        ..Options::default()
    };
    let handle = service.open(&name, &options).map_err(lock_failure)?;
    let started = Instant::now();
    let outcome = match service.try_acquire(handle).map_err(lock_failure)? {
        AcquireOutcome::Busy(holder) if patience > 0 => {
            if !args.quiet {
                eprintln!("{}", wait_notice(&name, holder.as_ref(), &place));
            }
            service.acquire(handle).map_err(lock_failure)?
        }
        outcome => outcome,
    };
    waiting.store(false, Ordering::SeqCst);
    // Interrupted while waiting (or just after): give the lock back, if we got it, and stop.
    if let Some(signal) = rx.try_iter().find_map(|e| match e {
        Event::Signal(c) => Some(c.signal),
        Event::Exited(_) => None,
    }) {
        if let AcquireOutcome::Acquired(_) = outcome {
            service.release(handle).map_err(lock_failure)?;
        }
        service.close(handle)?;
        if !args.quiet {
            eprintln!(
                "lockbydir: interrupted by signal {signal} while waiting for lock `{}`; gave up its place in line",
                escape(&name)
            );
        }
        return Ok(128u8.saturating_add(signal as u8));
    }
    let grant = match outcome {
        AcquireOutcome::Acquired(grant) => grant,
        AcquireOutcome::Busy(holder) => {
            let by = holder.map_or(String::new(), |h| {
                format!(
                    ": it is held by `{}` (fence {})",
                    escape(&h.holder),
                    h.fence
                )
            });
            let how = match patience {
                0 => format!("lock `{}` is busy", escape(&name)),
                _ => format!(
                    "gave up waiting for lock `{}` after {}",
                    escape(&name),
                    display_ms(patience)
                ),
            };
            eprintln!("lockbydir: {how}{by}");
            service.close(handle)?;
            return Ok(args.conflict_exit_code);
        }
    };
    if let Some(old) = &grant.took_over {
        eprintln!(
            "lockbydir: took over lock `{}` from `{}` (fence {}), whose deadline had passed",
            escape(&name),
            escape(&old.holder),
            old.fence
        );
    }
    if args.verbose {
        eprintln!(
            "lockbydir: acquired lock `{}` in {} (fence {}) after {}",
            escape(&name),
            escape(&place),
            grant.fence,
            display_ms(started.elapsed().as_millis() as u64)
        );
        eprintln!("lockbydir: {}", describe_waits(service.waits().mode));
    }

    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env_remove("LOCKBYDIR_DIR")
        .env("LOCKBYDIR_LOCK", &name)
        .env("LOCKBYDIR_FENCE", grant.fence.to_string())
        .envs(service.command_env());
    let group = process::prepare(&mut cmd);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            service.release(handle).map_err(lock_failure)?;
            service.close(handle)?;
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            eprintln!("lockbydir: cannot run `{}`: {e}", escape(&command[0]));
            return Ok(code);
        }
    };
    let running = process::Running::new(child, group);
    let status = hold_while_running(&mut *service, handle, &name, running, args.lease, tx, &rx)?;
    let mut compromised = status.compromised;
    if !compromised {
        match service.release(handle) {
            Ok(ReleaseReport::InTime) => {}
            Ok(ReleaseReport::Late) => eprintln!(
                "lockbydir: lock `{}` was released after its deadline (nobody took it over)",
                escape(&name)
            ),
            Err(Error::Lock {
                error: types::Error::Compromised(_),
                ..
            }) => {
                compromised = true;
                eprintln!("lockbydir: {}", status_line(&name, &mut *service, handle));
            }
            Err(e) => return Err(lock_failure(e)).context("release the lock"),
        }
    }
    service.close(handle)?;
    let code = exit_code(status.exit);
    Ok(if compromised && code == 0 {
        EXIT_COMPROMISED
    } else {
        code
    })
}

/// The lock directory and lock name LOCK stands for: a name in the lock directory, or, if it
/// contains `/`, the lock named after its last part in the directory before it. Such a path
/// overrides LOCKBYDIR_DIR, a default for every command; a --locks naming another directory
/// on the same command line is refused, since one of the two would be ignored.
fn lock_target(global: &Global, lock: &str) -> anyhow::Result<(PathBuf, String)> {
    let Some((dir, name)) = lock.rsplit_once('/') else {
        return Ok((global.lock_dir()?, lock.to_owned()));
    };
    let dir = absolute_dir(
        Path::new(if dir.is_empty() { "/" } else { dir }),
        "lock directory",
    )?;
    if global.locks_flag {
        let given = global.lock_dir()?;
        if !same_dir(&given, &dir) {
            return Err(Failure::error(
                exit::USAGE,
                format!(
                    "lock `{}` is a path, which names its own lock directory ({}), and --locks                      names another ({}): give --locks DIR with a lock name (`--locks {} {}`), or                      the path alone",
                    escape(lock),
                    escape(&dir.display().to_string()),
                    escape(&given.display().to_string()),
                    escape(&given.display().to_string()),
                    escape(name)
                ),
            ));
        }
    }
    Ok((dir, name.to_owned()))
}

/// Whether `a` and `b` are the same directory (by device and inode: links and `..` included).
fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

struct Finished {
    exit: ExitStatus,
    compromised: bool,
}

/// Wait for the command, refreshing the lock every third of its lease and passing signals on;
/// then stop what it left running in its process group.
fn hold_while_running(
    service: &mut dyn Backend,
    handle: LockId,
    name: &str,
    mut running: process::Running,
    lease_ms: u64,
    tx: mpsc::Sender<Event>,
    rx: &Receiver<Event>,
) -> anyhow::Result<Finished> {
    let mut child = running.take_child();
    std::thread::Builder::new()
        .name("command".into())
        .spawn(move || {
            let _ = tx.send(Event::Exited(child.wait()));
        })
        .context("start a thread to wait for the command")?;
    let every = Duration::from_millis((lease_ms / 3).max(1));
    let mut next_refresh = Instant::now() + every;
    let mut compromised = false;
    let exit = loop {
        let wake = next_refresh.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wake) {
            Ok(Event::Exited(exit)) => break exit.context("wait for the command")?,
            Ok(Event::Signal(caught)) => {
                if running.pass_on(caught) {
                    eprintln!(
                        "lockbydir: passed signal {} on to the command; lock `{}` is released when it exits",
                        caught.signal,
                        escape(name)
                    );
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("lost track of the command (its waiting thread ended)")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        next_refresh = Instant::now() + every;
        if compromised {
            continue;
        }
        match service.refresh(handle) {
            Ok(_) => {}
            Err(Error::Lock {
                error: types::Error::Compromised(c),
                ..
            }) => {
                compromised = true;
                let by = c.now_held_by.map_or(String::new(), |h| {
                    format!(
                        "; it is now held by `{}` (fence {})",
                        escape(&h.holder),
                        h.fence
                    )
                });
                eprintln!(
                    "lockbydir: compromised: lock `{}` (fence {}) expired and was taken over while the command ran{by}",
                    escape(name),
                    c.fence
                );
            }
            Err(e) => eprintln!(
                "lockbydir: warning: could not refresh lock `{}`: {}",
                escape(name),
                escape(&e.to_string())
            ),
        }
    };
    running.stop_leftovers();
    Ok(Finished { exit, compromised })
}

fn status_line(name: &str, service: &mut dyn Backend, handle: LockId) -> String {
    let now = match service.inspect(handle) {
        Ok(LockState::Held(h) | LockState::Expired(h)) => {
            format!(
                "; it is now held by `{}` (fence {})",
                escape(&h.holder),
                h.fence
            )
        }
        _ => String::new(),
    };
    format!(
        "compromised: lock `{}` expired and was taken over while the command ran{now}",
        escape(name)
    )
}

/// The exit code a shell would report: the code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        _ => 1,
    }
}

/// "exec blocking waiting for lock `N` held by `H` (fence F) in DIR": said once, when a
/// waiter starts waiting (cargo's "Blocking waiting for file lock"). It promises nothing about
/// when the wait ends (a holder that refreshes keeps the lock).
fn wait_notice(lock: &str, holder: Option<&types::HolderInfo>, place: &str) -> String {
    let held_by = match holder {
        Some(h) if h.holder.is_empty() => format!(" held by an unnamed holder (fence {})", h.fence),
        Some(h) => format!(" held by `{}` (fence {})", escape(&h.holder), h.fence),
        None => " (behind other waiters)".to_owned(),
    };
    format!(
        "lockbydir: exec blocking waiting for lock `{}`{held_by} in {}",
        escape(lock),
        escape(place)
    )
}

/// How the waits went, for `--verbose`, in words a user knows.
fn describe_waits(mode: WaitMode) -> String {
    match mode {
        WaitMode::Woken {
            looks,
            sleeps,
            woken,
        } => format!(
            "waited with wake-ups from the host: {looks} looks at the lock, {sleeps} sleeps a \
             change could end, {woken} ended by a change"
        ),
        WaitMode::Polling { why, looks } => {
            format!(
                "waited by polling ({}): {looks} looks at the lock",
                why.reason()
            )
        }
        WaitMode::Watched => {
            "waited by watching the key before this one in etcd (woken by etcd, no polling)"
                .to_owned()
        }
    }
}
