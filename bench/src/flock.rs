//! The kernel's flock, as a peer: `flock(LOCK_EX)` on a file opened once by each contender,
//! `flock(LOCK_UN)` to let go. A blocked flock has no timeout, so a contender with patience
//! (the hammering) arms a one-shot `ITIMER_REAL` whose SIGALRM, caught without `SA_RESTART`,
//! interrupts the wait (EINTR): one contender per process, as the hammering runs them.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::sys;

/// One contender's flock on the lock file.
pub struct FlockLock {
    file: File,
    patience: Option<Duration>,
}

impl FlockLock {
    /// Open (creating) `path`; `patience_ms` `u64::MAX` waits forever (only a process of its
    /// own may have patience: the timer is per process).
    pub fn open(path: &Path, patience_ms: u64) -> anyhow::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        let patience = (patience_ms != u64::MAX).then(|| Duration::from_millis(patience_ms));
        if patience.is_some() {
            catch_sigalrm()?;
        }
        Ok(FlockLock { file, patience })
    }

    /// Wait for the lock; false if patience ran out.
    pub fn acquire(&mut self) -> anyhow::Result<bool> {
        let Some(patience) = self.patience else {
            sys::flock(&self.file, true)?;
            return Ok(true);
        };
        arm(patience)?;
        let r = sys::flock(&self.file, true);
        arm(Duration::ZERO)?;
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e).context("flock"),
        }
    }

    /// Let the lock go.
    pub fn release(&mut self) -> anyhow::Result<()> {
        Ok(sys::flock(&self.file, false)?)
    }
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Catch SIGALRM with a handler that does nothing, without `SA_RESTART`, so that it
/// interrupts a blocked flock.
fn catch_sigalrm() -> anyhow::Result<()> {
    // SAFETY: an all-zero sigaction is valid; the handler is async-signal-safe (it does
    // nothing), and the pointers are to values owned by this frame.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error()).context("catch SIGALRM");
        }
    }
    Ok(())
}

/// Arm the one-shot real-time timer for `after` (zero: disarm).
fn arm(after: Duration) -> anyhow::Result<()> {
    let value = libc::timeval {
        tv_sec: after.as_secs() as libc::time_t,
        tv_usec: after.subsec_micros() as libc::suseconds_t,
    };
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: value,
    };
    // SAFETY: a valid itimerval owned by this frame; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setitimer");
    }
    Ok(())
}
