//! Whether a directory granted to a plugin (`--dir`) would give it the lock directory.
//!
//! A plugin that sees the lock directory can rename any holder's state entry and take its lock
//! while that holder still runs: the lock's whole defence is that plugins reach it only through
//! the lock component. So a grant that is the lock directory, contains it, or lies inside it is
//! refused unless the user says the plugin is trusted with every lock there. The check runs on
//! resolved paths (symlinks, `.` and `..` followed), and also compares directories by device
//! and inode, which catches a bind mount of the lock directory or of one of its parents.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How a granted directory overlaps the lock directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// It is the lock directory.
    Same,
    /// The lock directory is inside it.
    Contains,
    /// It is inside the lock directory.
    Inside,
}

/// A grant that would give a plugin the lock directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "--dir {grant}: refused: {how} the lock directory {lock_dir}, so the plugin could take any \
     lock there from its holder; grant another directory, or pass --trust-plugin-with-locks if \
     this plugin is trusted with every lock in it",
    grant = grant.display(),
    how = match overlap {
        Overlap::Same => format!("it is (resolved: {})", resolved.display()),
        Overlap::Contains => format!("it (resolved: {}) contains", resolved.display()),
        Overlap::Inside => format!("it (resolved: {}) lies inside", resolved.display()),
    },
    lock_dir = lock_dir.display(),
)]
pub struct GrantError {
    /// The grant as given.
    pub grant: PathBuf,
    /// The grant, resolved.
    pub resolved: PathBuf,
    /// The lock directory, resolved.
    pub lock_dir: PathBuf,
    /// How they overlap.
    pub overlap: Overlap,
}

/// Refuse `grant` if it overlaps `lock_dir` (see the module documentation). Paths that cannot
/// be resolved are left to the caller, which fails on them when it opens them.
pub fn check_grant(lock_dir: &Path, grant: &Path) -> Result<(), GrantError> {
    let (Ok(lock), Ok(resolved)) = (lock_dir.canonicalize(), grant.canonicalize()) else {
        return Ok(());
    };
    match overlap(&lock, &resolved) {
        None => Ok(()),
        Some(overlap) => Err(GrantError {
            grant: grant.to_owned(),
            resolved,
            lock_dir: lock,
            overlap,
        }),
    }
}

/// How the resolved `grant` overlaps the resolved `lock`, if it does.
fn overlap(lock: &Path, grant: &Path) -> Option<Overlap> {
    // By path, and by identity: `a` is `b`, or one of `b`'s ancestors.
    let is_at_or_above = |a: &Path, b: &Path| {
        b.starts_with(a) || {
            let id = identity(a);
            id.is_some() && b.ancestors().any(|up| identity(up) == id)
        }
    };
    let above = is_at_or_above(grant, lock);
    let below = is_at_or_above(lock, grant);
    match (above, below) {
        (true, true) => Some(Overlap::Same),
        (true, false) => Some(Overlap::Contains),
        (false, true) => Some(Overlap::Inside),
        (false, false) => None,
    }
}

/// A directory's device and inode.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lockbydir-grants-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("locks/inside")).unwrap();
        std::fs::create_dir_all(dir.join("other")).unwrap();
        dir
    }

    #[test]
    fn grants_that_reach_the_lock_directory_are_refused() {
        let dir = scratch("refused");
        let locks = dir.join("locks");
        std::os::unix::fs::symlink(&locks, dir.join("link")).unwrap();
        let cases = [
            (locks.clone(), Overlap::Same),
            (dir.join("link"), Overlap::Same),
            (locks.join("inside/.."), Overlap::Same),
            (dir.clone(), Overlap::Contains),
            (locks.join("inside"), Overlap::Inside),
            (dir.join("link/inside"), Overlap::Inside),
        ];
        for (grant, expected) in cases {
            let err = check_grant(&locks, &grant).unwrap_err();
            assert_eq!(err.overlap, expected, "{}", grant.display());
            let text = err.to_string();
            assert!(text.contains("--trust-plugin-with-locks"), "{text}");
            assert!(text.contains(&locks.canonicalize().unwrap().display().to_string()));
        }
        assert!(check_grant(&locks, &dir.join("other")).is_ok());
        // A sibling whose name starts like the lock directory's is not inside it.
        std::fs::create_dir_all(dir.join("locks2")).unwrap();
        assert!(check_grant(&locks, &dir.join("locks2")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
