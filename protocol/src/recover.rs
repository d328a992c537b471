//! Releasing a lock on behalf of a holder whose handle is gone: the host of a plugin whose
//! lock component died (it trapped, ran out of memory or of handles) still knows, for each
//! lock the plugin held, the name and the fence it was granted, and gives the lock back here.
//!
//! Fences are unique per lock and grow with every acquisition (a takeover gets a greater
//! one), so the state entry `held.<fence>.…` (or `held+.<fence>.…`, marked) with the granted
//! fence, if it is still there, is that acquisition and nobody else's. Releasing renames
//! exactly that name to `free.<fence>` (`free+.<fence>` if marked), the same rename a
//! release through the handle makes; if the entry is gone (taken over, or already released),
//! nothing changes.

use crate::entry::Entry;
use crate::error::Error;
use crate::fs::{Fs, FsErrorKind};
use crate::name::LockName;

/// How many times a listing that did not show our entry, or a rename that lost a race with a
/// waiter marking the entry, is repeated.
const ATTEMPTS: usize = 8;

/// What [`release_by_fence`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The acquisition with that fence still held the lock: it is free now.
    Released,
    /// The lock is no longer held with that fence (released, or taken over since).
    NotHeld,
}

/// Release lock `name` if its state is still the acquisition that was granted `fence`.
pub fn release_by_fence(fs: &impl Fs, name: &str, fence: u64) -> Result<Recovered, Error> {
    let name = LockName::new(name)?;
    let lockdir = name.lockdir();
    for _ in 0..ATTEMPTS {
        let names = match fs.read_dir(&lockdir) {
            Ok(names) => names,
            Err(e) if e.kind == FsErrorKind::NotFound => return Ok(Recovered::NotHeld),
            Err(source) => {
                return Err(Error::Io {
                    operation: "read-dir",
                    path: lockdir,
                    source,
                });
            }
        };
        let ours = names.iter().find_map(|n| match Entry::parse(n) {
            Some(Entry::Held(h)) if h.fence == fence => Some((n.clone(), h.waiters)),
            _ => None,
        });
        let Some((entry, waiters)) = ours else {
            // A listing torn by a concurrent rename may miss the entry: look again, and only
            // give up when the state is there and is not ours.
            let settled = names.iter().filter(|n| Entry::parse(n).is_some()).count() == 1;
            if settled {
                return Ok(Recovered::NotHeld);
            }
            continue;
        };
        let free = Entry::Free { fence, waiters }.encode();
        let from = format!("{lockdir}/{entry}");
        let to = format!("{lockdir}/{free}");
        match fs.rename(&from, &to) {
            Ok(()) => return Ok(Recovered::Released),
            // A waiter marked the entry meanwhile (or it was taken over): look again.
            Err(e) if e.kind == FsErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Io {
                    operation: "rename",
                    path: from,
                    source,
                });
            }
        }
    }
    Err(Error::Unsettled { path: lockdir })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Env, Lock, LockState, Options, Outcome, StdEnv, StdFs, inspect};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lockbydir-recover-{tag}-{}-{}",
            std::process::id(),
            StdEnv::new().random_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn options(holder: &str) -> Options {
        Options {
            timeout_ms: 60_000,
            patience_ms: 0,
            holder: holder.into(),
            ..Options::default()
        }
    }

    fn take(dir: &std::path::Path, holder: &str) -> (Lock<StdFs, StdEnv>, u64) {
        let mut lock = Lock::new(StdFs::new(dir), StdEnv::new(), "job", options(holder)).unwrap();
        let Outcome::Acquired(grant) = lock.try_acquire().unwrap() else {
            panic!("the lock was busy")
        };
        (lock, grant.fence)
    }

    fn state(dir: &std::path::Path) -> LockState {
        inspect(
            &StdFs::new(dir),
            &StdEnv::new(),
            &LockName::new("job").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn the_granted_fence_frees_exactly_that_acquisition() {
        let dir = scratch("own");
        let fs = StdFs::new(&dir);
        let (mut lock, fence) = take(&dir, "dead-plugin");
        // The handle is gone without releasing (as a dead lock component's would be).
        lock.abandon();
        drop(lock);
        assert!(matches!(state(&dir), LockState::Held(_)));
        assert_eq!(
            release_by_fence(&fs, "job", fence).unwrap(),
            Recovered::Released
        );
        assert_eq!(state(&dir), LockState::Free(fence));
        // Once free, the same fence frees nothing more.
        assert_eq!(
            release_by_fence(&fs, "job", fence).unwrap(),
            Recovered::NotHeld
        );

        // A later holder has a greater fence: the old fence cannot free its lock.
        let (mut later, later_fence) = take(&dir, "someone-else");
        assert!(later_fence > fence);
        assert_eq!(
            release_by_fence(&fs, "job", fence).unwrap(),
            Recovered::NotHeld
        );
        assert!(matches!(state(&dir), LockState::Held(h) if h.fence == later_fence));
        later.release().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_marked_entry_is_released_as_marked_and_a_missing_lock_is_not_held() {
        let dir = scratch("marked");
        let fs = StdFs::new(&dir);
        assert_eq!(release_by_fence(&fs, "job", 1).unwrap(), Recovered::NotHeld);
        let (mut lock, fence) = take(&dir, "dead-plugin");
        lock.abandon();
        drop(lock);
        // Mark it as a waiter would: rename the exact entry to its `held+` name.
        let lockdir = dir.join("job.lockdir");
        let entry = std::fs::read_dir(&lockdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with("held."))
            .unwrap();
        let marked = entry.replacen("held.", "held+.", 1);
        std::fs::rename(lockdir.join(&entry), lockdir.join(&marked)).unwrap();
        assert_eq!(
            release_by_fence(&fs, "job", fence).unwrap(),
            Recovered::Released
        );
        let names: Vec<String> = std::fs::read_dir(&lockdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("free+.{fence}")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
