//! Removing lockdirs nobody uses, for the lock directory's administrator (`lockbydir prune`).
//!
//! The protocol never removes a lockdir: that is what keeps fences growing. A lock directory
//! that many names passed through keeps one lockdir per name for good. [`prune`] removes the
//! lockdirs that are free (not marked: nobody queued), have no live ticket in their queue, and
//! whose last change is older than a given age by the filesystem's clock.
//!
//! # Why a concurrent user cannot lose its lock
//!
//! A lockdir is removed by renaming its exact state entry `free.k` out of it first (to a
//! scratch directory `.N.<random>.pruned`), and only then removing the lockdir, which `rmdir`
//! does only if it is empty. That rename is the same compare-and-swap every state change is:
//!
//! - someone who acquires renames `free.k` too; exactly one of the two renames succeeds. If
//!   the acquirer wins, the prune's rename fails and the lock is kept. Any use since the prune
//!   looked at the lock changed the entry's name (fences grow, so `free.k` never comes back),
//!   and the prune's rename fails the same way;
//! - if the prune wins, the acquirer's rename fails and it looks again: it finds the lockdir
//!   empty or gone, which the protocol reads as "no lock yet", and creates it (by renaming a
//!   staging directory onto the empty lockdir, or to the free name). Whatever the order of
//!   that and the prune's `rmdir`, the `rmdir` removes only an empty directory, so it never
//!   removes a lockdir that holds a state;
//! - a held lock (even an expired one) and a marked one are never touched.
//!
//! So a prune can only ever remove a *free* state, which is the same as the lock never having
//! been taken. **What it costs:** the fences of a pruned lock restart: its next acquisition
//! gets fence 1, even by a handle that held fence `k` before. A resource that checks fences
//! must not be protected by a lock that gets pruned (choose an age longer than any pause of a
//! fenced holder, or do not prune those names). A prune also forgets nothing else: waiters
//! are not affected (a lock with a live ticket is kept).

use crate::entry::{Entry, Ticket};
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsError, FsErrorKind};
use crate::name::LockName;

/// Which lockdirs to remove.
#[derive(Clone, Copy, Debug, Default)]
pub struct PruneOptions {
    /// Only lockdirs whose last change is at least this old (ms, filesystem clock). On a
    /// filesystem without timestamps only 0 prunes anything.
    pub older_than_ms: u64,
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
}

/// What became of one lockdir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Removed; its last fence was this (its fences restart at 1).
    Pruned(u64),
    /// Would be removed (dry run); its last fence is this.
    WouldPrune(u64),
    /// Kept: someone holds it (or held it and it expired; a takeover is for waiters).
    Held,
    /// Kept: free, but waiters queued for it (a marked state or a live ticket).
    Queued,
    /// Kept: changed more recently than the age asked for (ms since its last change).
    Recent(u64),
    /// Kept: someone used it while the prune looked (its compare-and-swap failed).
    InUse,
    /// Kept: its state could not be read as one entry (being created, or damaged).
    Unreadable,
}

/// One lockdir and what the prune did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneReport {
    /// The lock.
    pub name: LockName,
    /// What was done.
    pub verdict: Verdict,
}

/// Remove the unused lockdirs of the lock directory (see the module documentation). Returns
/// one report per lockdir, sorted by name.
pub fn prune(
    fs: &impl Fs,
    env: &impl Env,
    options: PruneOptions,
) -> Result<Vec<PruneReport>, Error> {
    let entries = fs
        .read_dir(".")
        .map_err(|e| io("read-dir", ".".into(), e))?;
    // Leftovers of a prune that stopped between its two steps: empty directories.
    for leftover in entries.iter().filter(|e| is_pruned_scratch(e)) {
        let _ = fs.remove_dir(leftover);
    }
    let mut names: Vec<LockName> = entries
        .iter()
        .filter_map(|n| LockName::from_lockdir(n))
        .collect();
    names.sort();
    // One reading of the filesystem's clock, taken before any lockdir is looked at: ages are
    // then never overestimated.
    let fs_now = filesystem_now(fs, env)?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let verdict = prune_one(fs, env, &name, fs_now, options)?;
        out.push(PruneReport { name, verdict });
    }
    Ok(out)
}

fn prune_one(
    fs: &impl Fs,
    env: &impl Env,
    name: &LockName,
    fs_now: Option<u64>,
    options: PruneOptions,
) -> Result<Verdict, Error> {
    let lockdir = name.lockdir();
    let states: Vec<Entry> = match fs.read_dir(&lockdir) {
        Ok(names) => names.iter().filter_map(|n| Entry::parse(n)).collect(),
        Err(e) if e.kind == FsErrorKind::NotFound => return Ok(Verdict::InUse),
        Err(e) => return Err(io("read-dir", lockdir, e)),
    };
    let fence = match states.as_slice() {
        [
            Entry::Free {
                fence,
                waiters: false,
            },
        ] => *fence,
        [Entry::Free { waiters: true, .. }] => return Ok(Verdict::Queued),
        [Entry::Held(_)] => return Ok(Verdict::Held),
        _ => return Ok(Verdict::Unreadable),
    };
    if has_live_ticket(fs, env, &name.queue_dir())? {
        return Ok(Verdict::Queued);
    }
    let changed = fs
        .modified_ms(&lockdir)
        .map_err(|e| io("stat", lockdir.clone(), e))?;
    let idle = match (fs_now, changed) {
        (Some(now), Some(changed)) => now.saturating_sub(changed),
        _ => 0,
    };
    if idle < options.older_than_ms {
        return Ok(Verdict::Recent(idle));
    }
    if options.dry_run {
        return Ok(Verdict::WouldPrune(fence));
    }
    remove_free(fs, env, name, fence)
}

/// Remove lock `name` if its state is still exactly `free.<fence>`: move that entry out of the
/// lockdir (the compare-and-swap), then remove the lockdir if it is empty, and its queue.
fn remove_free(
    fs: &impl Fs,
    env: &impl Env,
    name: &LockName,
    fence: u64,
) -> Result<Verdict, Error> {
    let lockdir = name.lockdir();
    let free = Entry::Free {
        fence,
        waiters: false,
    };
    let entry = format!("{lockdir}/{}", free.encode());
    let scratch = format!(".{name}.{:016x}.pruned", env.random_u64());
    match fs.rename(&entry, &scratch) {
        Ok(()) => {}
        // A retried rename that did succeed (network filesystems) reports NotFound too.
        Err(e) if e.kind == FsErrorKind::NotFound && !fs.exists(&scratch).unwrap_or(false) => {
            return Ok(Verdict::InUse);
        }
        Err(e) if e.kind == FsErrorKind::NotFound => {}
        Err(e) => return Err(io("rename", entry, e)),
    }
    let _ = fs.remove_dir(&scratch);
    // Only if still empty: an acquirer may have made the lock again already.
    let _ = fs.remove_dir(&lockdir);
    remove_queue(fs, &name.queue_dir());
    Ok(Verdict::Pruned(fence))
}

/// Whether the queue directory holds a ticket that has not expired (by our clock).
fn has_live_ticket(fs: &impl Fs, env: &impl Env, queue_dir: &str) -> Result<bool, Error> {
    match fs.read_dir(queue_dir) {
        Ok(names) => {
            let now = env.now_ms();
            Ok(names
                .iter()
                .filter_map(|n| Ticket::parse(n))
                .any(|t| t.expires_ms >= now))
        }
        Err(e) if e.kind == FsErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("read-dir", queue_dir.to_owned(), e)),
    }
}

/// Remove a pruned lock's queue directory and the expired tickets in it (best effort: a
/// waiter arriving now makes its ticket, and the directory, again).
fn remove_queue(fs: &impl Fs, queue_dir: &str) {
    if let Ok(names) = fs.read_dir(queue_dir) {
        for ticket in names.iter().filter(|n| Ticket::parse(n).is_some()) {
            let _ = fs.remove_dir(&format!("{queue_dir}/{ticket}"));
        }
        let _ = fs.remove_dir(queue_dir);
    }
}

/// `.<name>.<16 hex digits>.pruned`: an entry a prune moved out of a lockdir.
fn is_pruned_scratch(entry: &str) -> bool {
    entry
        .strip_prefix('.')
        .and_then(|e| e.strip_suffix(".pruned"))
        .and_then(|e| e.rsplit_once('.'))
        .is_some_and(|(_, token)| token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The filesystem's "now": the mtime of a probe directory made for the purpose.
fn filesystem_now(fs: &impl Fs, env: &impl Env) -> Result<Option<u64>, Error> {
    let probe = format!(".prune.{:016x}.probe", env.random_u64());
    fs.create_dir(&probe)
        .map_err(|e| io("create-dir", probe.clone(), e))?;
    let now = fs.modified_ms(&probe);
    let _ = fs.remove_dir(&probe);
    now.map_err(|e| io("stat", probe, e))
}

fn io(operation: &'static str, path: String, source: FsError) -> Error {
    Error::Io {
        operation,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lock, Options, Outcome, StdEnv, StdFs};

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("lockbydir-prune-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn verdicts(reports: &[PruneReport]) -> Vec<(&str, Verdict)> {
        reports
            .iter()
            .map(|r| (r.name.as_str(), r.verdict.clone()))
            .collect()
    }

    #[test]
    fn removes_free_idle_locks_and_keeps_held_and_queued_ones() {
        let root = dir("verdicts");
        let fs = StdFs::new(&root);
        let env = StdEnv::new();
        let options = Options {
            timeout_ms: 60_000,
            holder: "t".into(),
            ..Options::default()
        };
        let take = |name: &str| {
            let mut lock =
                Lock::new(StdFs::new(&root), StdEnv::new(), name, options.clone()).unwrap();
            assert!(matches!(lock.acquire().unwrap(), Outcome::Acquired(_)));
            lock
        };
        take("idle").release().unwrap();
        let held = take("held");
        take("queued").release().unwrap();
        let ticket = Ticket {
            arrival_ms: env.now_ms(),
            token: 7,
            expires_ms: env.now_ms() + 600_000,
        };
        std::fs::create_dir_all(root.join("queued.queue").join(ticket.encode())).unwrap();

        let recent = prune(
            &fs,
            &env,
            PruneOptions {
                older_than_ms: 3_600_000,
                dry_run: false,
            },
        )
        .unwrap();
        assert!(
            matches!(recent[1].verdict, Verdict::Recent(_)),
            "{recent:?}"
        );
        let dry = prune(
            &fs,
            &env,
            PruneOptions {
                older_than_ms: 0,
                dry_run: true,
            },
        )
        .unwrap();
        assert_eq!(
            verdicts(&dry),
            [
                ("held", Verdict::Held),
                ("idle", Verdict::WouldPrune(1)),
                ("queued", Verdict::Queued)
            ]
        );
        assert!(root.join("idle.lockdir").exists());
        let done = prune(
            &fs,
            &env,
            PruneOptions {
                older_than_ms: 0,
                dry_run: false,
            },
        )
        .unwrap();
        assert_eq!(
            verdicts(&done),
            [
                ("held", Verdict::Held),
                ("idle", Verdict::Pruned(1)),
                ("queued", Verdict::Queued)
            ]
        );
        assert!(!root.join("idle.lockdir").exists());
        // The cost: the next acquisition of a pruned lock starts its fences again.
        let mut again = take("idle");
        assert_eq!(again.fence(), Some(1));
        again.release().unwrap();
        drop(held);
        let names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "scratch left behind: {names:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_lock_used_after_the_prune_looked_is_kept() {
        // The prune saw `free.1`; someone acquired and released before its rename (`free.2`
        // now), or holds it: the compare-and-swap fails and nothing is removed.
        let root = dir("race");
        let fs = StdFs::new(&root);
        let env = StdEnv::new();
        let name = LockName::new("x").unwrap();
        let mut lock =
            Lock::new(StdFs::new(&root), StdEnv::new(), "x", Options::default()).unwrap();
        for _ in 0..2 {
            assert!(matches!(lock.acquire().unwrap(), Outcome::Acquired(_)));
            lock.release().unwrap();
        }
        assert_eq!(remove_free(&fs, &env, &name, 1).unwrap(), Verdict::InUse);
        assert!(root.join("x.lockdir/free.2").exists());
        assert!(matches!(lock.acquire().unwrap(), Outcome::Acquired(_)));
        assert_eq!(remove_free(&fs, &env, &name, 2).unwrap(), Verdict::InUse);
        // Its holder still holds it: release is in time, not compromised.
        lock.release().unwrap();
        // And once it is removed, the next acquirer simply makes it again.
        assert_eq!(
            remove_free(&fs, &env, &name, 3).unwrap(),
            Verdict::Pruned(3)
        );
        assert!(!root.join("x.lockdir").exists());
        assert!(matches!(lock.acquire().unwrap(), Outcome::Acquired(g) if g.fence == 1));
        lock.release().unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}
