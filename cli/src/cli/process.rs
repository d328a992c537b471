//! The command `exec` runs: never outliving lockbydir, and in a process group of its own so
//! that what it leaves running can be stopped before the lock is released.
//!
//! - Linux: the child asks for SIGKILL when lockbydir dies (`PR_SET_PDEATHSIG`), then checks
//!   that lockbydir did not die before that took effect (its parent is still the process that
//!   forked it). The signal fires when the *thread* that forked exits, so `exec` spawns from
//!   its main thread, which lives until lockbydir exits. It reaches the command itself only:
//!   grandchildren (`sh -c 'a & b'`) are stopped through the process group instead, which
//!   lockbydir can do only while it lives (not after a SIGKILL).
//! - Other Unix systems have no parent-death signal: there a command whose lockbydir is
//!   killed with SIGKILL runs on unlocked. The process group handling is the same.
//! - In the foreground of a terminal (stdin is a terminal whose foreground process group is
//!   lockbydir's), the command stays in lockbydir's process group, so that it can read the
//!   terminal and job control works; the terminal's signals (Ctrl-C) then reach it directly
//!   and are not passed on a second time, and only the command itself is stopped at the end.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::signals::Caught;

/// How long leftovers get between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

/// Where the command runs, as [`prepare`] set it up.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// In a process group of its own (whose id is its pid).
    own: bool,
}

/// Set up `cmd` so that it dies with lockbydir and runs in its own process group.
pub fn prepare(cmd: &mut Command) -> Group {
    let own = !in_terminal_foreground();
    if own {
        cmd.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl(2) and getppid(2) are async-signal-safe, which is what a pre_exec
        // closure may call; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // lockbydir died between fork and prctl: the signal will never come.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other(
                        "lockbydir exited before the command started",
                    ));
                }
                Ok(())
            });
        }
    }
    Group { own }
}

/// Whether stdin is a terminal in whose foreground lockbydir runs.
fn in_terminal_foreground() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only read process and terminal state.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// A running command: stopped with its group if lockbydir ends early (an error, a panic).
pub struct Running {
    child: Option<Child>,
    pid: libc::pid_t,
    group: Group,
    stopped: bool,
}

impl Running {
    /// Track `child`, started after [`prepare`] returned `group`.
    pub fn new(child: Child, group: Group) -> Self {
        Running {
            pid: child.id() as libc::pid_t,
            child: Some(child),
            group,
            stopped: false,
        }
    }

    /// The child, to wait for on another thread (it can be taken once).
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("the child is taken once")
    }

    /// Pass a caught signal on; false if it already reached the command (a terminal's signal
    /// to the process group both share).
    pub fn pass_on(&self, caught: Caught) -> bool {
        if !self.group.own && caught.by_kernel {
            return false;
        }
        self.kill(caught.signal);
        true
    }

    /// Send `signal` to the command's group (or to the command alone if it has none).
    fn kill(&self, signal: libc::c_int) -> bool {
        let target = if self.group.own { -self.pid } else { self.pid };
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(target, signal) == 0 }
    }

    /// Whether anything is left in the command's process group.
    fn group_alive(&self) -> bool {
        self.group.own && self.kill(0)
    }

    /// After the command exited: SIGTERM whatever it left running in its group, SIGKILL what
    /// is still there after [`LEFTOVER_GRACE`], and wait (a little) for it to go.
    pub fn stop_leftovers(&mut self) {
        self.stopped = true;
        if !self.group_alive() {
            return;
        }
        self.kill(libc::SIGTERM);
        if !wait_for(LEFTOVER_GRACE, || !self.group_alive()) {
            self.kill(libc::SIGKILL);
            wait_for(Duration::from_secs(1), || !self.group_alive());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.stopped {
            self.kill(libc::SIGKILL);
        }
    }
}

/// Poll `done` every 10 ms for up to `limit`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}
