//! The seed's algorithm, as a peer: the lock is the directory `<name>.lockdir`; `mkdir`
//! takes it (fails with EEXIST while someone holds it), `rmdir` lets it go, and a waiter
//! simply tries `mkdir` again every `poll` (the seed's default: 30 ms). No queue, no
//! fencing, no recovery from a dead holder: what the seed measured, kept this small on
//! purpose.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A seed-like lock in one lock directory.
pub struct SeedLock {
    path: PathBuf,
    poll: Duration,
    patience: Option<Duration>,
}

impl SeedLock {
    /// Lock `<lock_dir>/<name>.lockdir`, trying every `poll_ms`, giving up after
    /// `patience_ms` (`u64::MAX`: never).
    pub fn new(lock_dir: &Path, name: &str, poll_ms: u64, patience_ms: u64) -> Self {
        SeedLock {
            path: lock_dir.join(format!("{name}.lockdir")),
            poll: Duration::from_millis(poll_ms.max(1)),
            patience: (patience_ms != u64::MAX).then(|| Duration::from_millis(patience_ms)),
        }
    }

    /// Wait for the lock; false if patience ran out.
    pub fn acquire(&mut self) -> anyhow::Result<bool> {
        let start = Instant::now();
        loop {
            match std::fs::create_dir(&self.path) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).context(format!("mkdir {}", self.path.display())),
            }
            if self.patience.is_some_and(|p| start.elapsed() >= p) {
                return Ok(false);
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Let the lock go.
    pub fn release(&mut self) -> anyhow::Result<()> {
        std::fs::remove_dir(&self.path).with_context(|| format!("rmdir {}", self.path.display()))
    }
}
