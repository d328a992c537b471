//! Who waits for a lock: one look at its queue directory, changing nothing.
//!
//! A waiter's ticket is the directory `N.queue/wait.<arrival>.<token>.<expires>` (see
//! [`Ticket`]). [`queue_status`] counts the tickets that count now, finds the oldest waiter,
//! and reports what else the queue directory holds, for inspection (`lockbydir status`); the
//! waiters themselves decide their order in [`crate::lock`], which also removes dead tickets.

use crate::entry::Ticket;
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsErrorKind};
use crate::name::LockName;

/// What one look at a lock's queue directory found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStatus {
    /// Tickets not past the expiry they claim, by the reader's clock: the waiters. One ticket
    /// shown under two names by a listing torn by its renewal counts once.
    pub live: usize,
    /// When the oldest live waiter started waiting (ms since the epoch, its own clock).
    pub oldest_arrival_ms: Option<u64>,
    /// Tickets past their expiry: waiters that died or gave up without removing their ticket.
    /// They hold nobody up (see [`crate::lock`], "Fairness").
    pub expired: usize,
    /// Names in the queue directory that are no ticket, sorted: lockbydir never writes them
    /// and the protocol ignores them.
    pub foreign: Vec<String>,
}

/// The queue of lock `name` now (an empty one if its queue directory does not exist).
///
/// A ticket counts while the reader's clock is not past the expiry it claims. The waiters'
/// own rule also drops a ticket that stays one name for longer than its lifetime (a waiter
/// with a clock far behind): that needs two looks over time, so one look cannot apply it,
/// and such a ticket is counted here until a waiter removes it.
pub fn queue_status(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<QueueStatus, Error> {
    let dir = name.queue_dir();
    let names = match fs.read_dir(&dir) {
        Ok(names) => names,
        Err(e) if e.kind == FsErrorKind::NotFound => return Ok(QueueStatus::default()),
        Err(source) => {
            return Err(Error::Io {
                operation: "read-dir",
                path: dir,
                source,
            });
        }
    };
    let now = env.now_ms();
    let mut tickets = Vec::new();
    let mut status = QueueStatus::default();
    for entry in names {
        match Ticket::parse(&entry) {
            Some(ticket) => tickets.push(ticket),
            None => status.foreign.push(entry),
        }
    }
    status.foreign.sort();
    // A renewal renames a ticket to a later expiry: of one token's names, the latest counts.
    tickets.sort_by_key(|t| (t.token, std::cmp::Reverse(t.expires_ms)));
    tickets.dedup_by_key(|t| t.token);
    for ticket in tickets {
        if now > ticket.expires_ms {
            status.expired += 1;
        } else {
            status.live += 1;
            let arrival = ticket.arrival_ms;
            status.oldest_arrival_ms =
                Some(status.oldest_arrival_ms.map_or(arrival, |o| o.min(arrival)));
        }
    }
    Ok(status)
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;
    use crate::{StdEnv, StdFs};

    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(tag: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("lockbydir-waiters-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    #[test]
    fn counts_live_tickets_once_and_reports_the_rest() {
        let dir = scratch("count");
        let env = StdEnv::new();
        let now = env.now_ms();
        let queue = dir.0.join("bed.queue");
        let ticket = |arrival: u64, token: u64, expires: u64| {
            let t = Ticket {
                arrival_ms: arrival,
                token,
                expires_ms: expires,
            };
            std::fs::create_dir_all(queue.join(t.encode())).unwrap();
        };
        ticket(now - 5_000, 1, now + 60_000);
        // Renewed: the same token under its old name too (a torn listing), counted once.
        ticket(now - 3_000, 2, now + 50_000);
        ticket(now - 3_000, 2, now + 60_000);
        ticket(now - 9_000, 3, now - 1_000);
        std::fs::write(queue.join("notes.txt"), "").unwrap();
        let name = LockName::new("bed").unwrap();
        let status = queue_status(&StdFs::new(&dir.0), &env, &name).unwrap();
        assert_eq!(
            status,
            QueueStatus {
                live: 2,
                oldest_arrival_ms: Some(now - 5_000),
                expired: 1,
                foreign: vec!["notes.txt".into()],
            }
        );
    }

    #[test]
    fn no_queue_directory_is_an_empty_queue_and_a_file_is_an_error() {
        let dir = scratch("file");
        let fs = StdFs::new(&dir.0);
        let env = StdEnv::new();
        let name = LockName::new("bed").unwrap();
        assert_eq!(queue_status(&fs, &env, &name), Ok(QueueStatus::default()));
        std::fs::write(dir.0.join("bed.queue"), "").unwrap();
        match queue_status(&fs, &env, &name) {
            Err(Error::Io {
                operation, path, ..
            }) => assert_eq!((operation, path.as_str()), ("read-dir", "bed.queue")),
            other => panic!("{other:?}"),
        }
    }
}
