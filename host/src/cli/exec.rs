//! `lockbydir exec`: run a native command while holding a lock (like flock(1)).

use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use lockbydir::display::escape;
use lockbydir::duration::display_ms;
use lockbydir::waiting::WaitNotice;
use lockbydir::{Error, LockService, wit};

use super::{Global, duration_ms, signals};

/// How often a running `exec` checks for signals to pass on.
const SIGNAL_TICK: Duration = Duration::from_millis(50);

/// Exit code when patience runs out (EX_TEMPFAIL).
pub const EXIT_GAVE_UP: u8 = 75;
/// Exit code when the command succeeded but the lock was lost while it ran (EX_SOFTWARE).
pub const EXIT_COMPROMISED: u8 = 70;

/// Run COMMAND while holding lock NAME, refreshing it while the command runs and releasing
/// it afterwards.
///
/// The command's exit code becomes lockbydir's. It gets LOCKBYDIR_LOCK, LOCKBYDIR_DIR and
/// LOCKBYDIR_FENCE (the fencing token) in its environment. If patience runs out, lockbydir
/// exits 75 naming the holder. If the lock is taken over while the command runs (lockbydir
/// was stopped past the deadline), it says "compromised" and exits 70 even if the command
/// succeeded.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// How long the lock stays valid without refresh; refreshed every third of it.
    #[arg(long, default_value = "30s", value_parser = duration_ms, value_name = "DUR")]
    timeout: u64,
    /// How long to wait for the lock before giving up (0: one attempt; inf: forever).
    #[arg(long, default_value = "inf", value_parser = duration_ms, value_name = "DUR")]
    patience: u64,
    /// Who holds the lock, as shown to others [default: the command and lockbydir's pid].
    #[arg(long, value_name = "LABEL")]
    holder: Option<String>,
    /// Do not announce waiting on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// The lock's name.
    name: String,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub fn exec(global: &Global, args: ExecArgs) -> anyhow::Result<u8> {
    let lock_dir = global.lock_dir()?;
    let runtime = global.runtime()?;
    let mut service = LockService::new(&runtime, &lock_dir)?;
    let holder = args
        .holder
        .clone()
        .unwrap_or_else(|| format!("{} (pid {})", args.command.join(" "), std::process::id()));
    let options = wit::Options {
        timeout_ms: args.timeout,
        patience_ms: args.patience,
        min_poll_ms: 1,
        max_poll_ms: 50,
        max_clock_skew_ms: 0,
        holder,
    };
    let handle = service.open(&args.name, &options)?;
    let grant = match service.try_acquire(&handle)? {
        wit::AcquireOutcome::Acquired(grant) => grant,
        wit::AcquireOutcome::Busy(holder) => {
            if !args.quiet && args.patience > 0 {
                let now = service.now_ms()?;
                eprintln!(
                    "{}",
                    WaitNotice::new("exec", &args.name, holder.as_ref(), now)
                );
            }
            match service.acquire(&handle)? {
                wit::AcquireOutcome::Acquired(grant) => grant,
                wit::AcquireOutcome::Busy(holder) => {
                    let by = holder.map_or(String::new(), |h| {
                        format!(
                            ": it is held by `{}` (fence {})",
                            escape(&h.holder),
                            h.fence
                        )
                    });
                    eprintln!(
                        "lockbydir: gave up waiting for lock `{}` after {}{by}",
                        args.name,
                        display_ms(args.patience)
                    );
                    service.close(handle)?;
                    return Ok(EXIT_GAVE_UP);
                }
            }
        }
    };
    if let Some(old) = &grant.took_over {
        eprintln!(
            "lockbydir: took over lock `{}` from `{}` (fence {}), whose deadline had passed",
            args.name, old.holder, old.fence
        );
    }

    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("LOCKBYDIR_LOCK", &args.name)
        .env("LOCKBYDIR_DIR", &lock_dir)
        .env("LOCKBYDIR_FENCE", grant.fence.to_string());
    // From here on, SIGINT/SIGTERM/SIGHUP go to the command, and the lock is released after it.
    signals::catch();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            service.close(handle)?;
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!("lockbydir: cannot run {:?}: {e}", args.command[0]);
            return Ok(code);
        }
    };
    let status = hold_while_running(&mut service, &handle, &args.name, child, args.timeout)?;
    let mut compromised = status.compromised;
    if !compromised {
        match service.release(&handle) {
            Ok(wit::ReleaseReport::InTime) => {}
            Ok(wit::ReleaseReport::Late) => eprintln!(
                "lockbydir: lock `{}` was released after its deadline (nobody took it over)",
                args.name
            ),
            Err(Error::Lock {
                error: wit::Error::Compromised(_),
                ..
            }) => {
                compromised = true;
                eprintln!(
                    "lockbydir: {}",
                    status_line(&args.name, &mut service, &handle)
                );
            }
            Err(e) => return Err(e).context("release the lock"),
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

struct Finished {
    exit: ExitStatus,
    compromised: bool,
}

/// Wait for the child, refreshing the lock every third of its timeout and passing signals on.
fn hold_while_running(
    service: &mut LockService,
    handle: &lockbydir::LockHandle,
    name: &str,
    mut child: std::process::Child,
    timeout_ms: u64,
) -> anyhow::Result<Finished> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let every = Duration::from_millis((timeout_ms / 3).max(1));
    let mut next_refresh = Instant::now() + every;
    let mut compromised = false;
    let exit = loop {
        let wake = next_refresh
            .saturating_duration_since(Instant::now())
            .min(SIGNAL_TICK);
        match rx.recv_timeout(wake) {
            Ok(exit) => break exit.context("wait for the command")?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("lost track of the command (its waiting thread ended)")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(signal) = signals::pass_on(pid) {
            eprintln!(
                "lockbydir: passed signal {signal} on to the command; lock `{name}` is released when it exits"
            );
        }
        if compromised || Instant::now() < next_refresh {
            continue;
        }
        next_refresh = Instant::now() + every;
        match service.refresh(handle) {
            Ok(_) => {}
            Err(Error::Lock {
                error: wit::Error::Compromised(c),
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
                    "lockbydir: compromised: lock `{name}` (fence {}) expired and was taken over while the command ran{by}",
                    c.fence
                );
            }
            Err(e) => eprintln!("lockbydir: warning: could not refresh lock `{name}`: {e}"),
        }
    };
    let _ = waiter.join();
    Ok(Finished { exit, compromised })
}

fn status_line(name: &str, service: &mut LockService, handle: &lockbydir::LockHandle) -> String {
    let now = match service.inspect(handle) {
        Ok(wit::LockState::Held(h) | wit::LockState::Expired(h)) => {
            format!(
                "; it is now held by `{}` (fence {})",
                escape(&h.holder),
                h.fence
            )
        }
        _ => String::new(),
    };
    format!("compromised: lock `{name}` expired and was taken over while the command ran{now}")
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
