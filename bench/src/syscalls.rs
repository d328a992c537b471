//! System calls counted with `strace -c -f`, attached to running contender processes.
//!
//! Attached just before the go and following every thread until the processes exit, it
//! counts what their loops cost (plus the few calls of writing their logs and exiting),
//! not their start-up. Under ptrace every call is much slower, so a traced round only
//! gives counts; its times are never used.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long `strace` may take to attach to every process.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `strace` can be run here.
pub fn available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Start `strace -c -f -o <out>` on `pids`; returns once it has attached to all of them.
/// It exits, writing its summary, when the last of them has exited.
pub fn attach(pids: &[u32], out: &Path) -> anyhow::Result<Child> {
    let mut cmd = Command::new("strace");
    cmd.args(["-c", "-f", "-o"]).arg(out);
    for pid in pids {
        cmd.arg("-p").arg(pid.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start strace (Debian: apt-get install strace)")?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    // strace says "Process N attached" once per process it attached to.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("attached") && tx.send(()).is_err() {
                return;
            }
        }
    });
    for seen in 0..pids.len() {
        if rx.recv_timeout(ATTACH_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "strace attached to only {seen} of {} processes (ptrace may be forbidden here)",
                pids.len()
            );
        }
    }
    Ok(child)
}

/// Kill `strace` (pid `tracer`) unless [`Watchdog::done`] is called within `limit`. A process
/// that exits while strace attaches to it can be left a zombie that strace waits for
/// forever, holding the others stopped: killing the tracer detaches every process it
/// follows, so the round ends (its count, incomplete, is then not used).
pub struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    /// Start watching `tracer`.
    pub fn start(tracer: u32, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let until = Instant::now() + limit;
        std::thread::spawn(move || {
            while Instant::now() < until {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !flag.load(Ordering::SeqCst) {
                // SAFETY: kill(2) on a pid we started; no memory is involved.
                unsafe { libc::kill(tracer as libc::pid_t, libc::SIGKILL) };
            }
        });
        Watchdog(done)
    }

    /// The traced round ended in time: the tracer is left alone.
    pub fn done(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The total number of calls in the summary `strace -c` wrote to `file`.
pub fn total_calls(file: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    parse_total(&text).with_context(|| format!("no total in strace's summary {}", file.display()))
}

/// The `calls` column of the `total` line:
/// `100.00    0.001234           1      1234        12 total` (the errors column may be empty).
fn parse_total(summary: &str) -> Option<u64> {
    let line = summary
        .lines()
        .rev()
        .find(|l| l.split_whitespace().last() == Some("total"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_line_gives_the_calls() {
        let summary = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.000600           3       200           renameat
 40.00    0.000400           1       400        10 statx
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000           1       600        10 total
";
        assert_eq!(parse_total(summary), Some(600));
        assert_eq!(parse_total("no summary"), None);
    }

    /// A tracer that does not end in time is killed; one told `done` is left alone.
    #[test]
    fn the_watchdog_kills_a_tracer_that_hangs() {
        use std::os::unix::process::ExitStatusExt;
        let mut stuck = Command::new("sleep").arg("600").spawn().unwrap();
        let _watchdog = Watchdog::start(stuck.id(), Duration::from_millis(200));
        let status = stuck.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

        let mut fine = Command::new("sleep").arg("1").spawn().unwrap();
        let watchdog = Watchdog::start(fine.id(), Duration::from_millis(300));
        watchdog.done();
        let status = fine.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}
