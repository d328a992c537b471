//! Which lock directory a command uses: `--locks DIR` (or `LOCKBYDIR_DIR`), else a per-user
//! default that is the same wherever the command runs from.
//!
//! The default is `lockbydir-<uid>` in the temporary directory (`$TMPDIR`, else `/tmp`),
//! created mode 0700 on first use. It does not depend on the current directory (so `cd A;
//! lockbydir exec nightly` and `cd B; lockbydir exec nightly` are one lock) nor on a login
//! session (cron jobs and shells of one user get the same one, which `$XDG_RUNTIME_DIR` would
//! not give). Since anyone can create a directory in `/tmp`, one that is not ours, or that
//! others could write to, is refused rather than used: someone else could hold or break
//! our locks there.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::exit::{Failure, NO_PERM};

/// The default lock directory's path (not checked, not created).
pub fn default_path() -> PathBuf {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("lockbydir-{uid}"))
}

/// The default lock directory, created (mode 0700) if missing, and checked to be a directory
/// (not a symlink) owned by us and writable by nobody else.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    let dir = default_path();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Failure::error(
                super::exit::io_code(e.kind()),
                format!(
                    "cannot create the default lock directory {}: {e}; pass one with --locks DIR or LOCKBYDIR_DIR",
                    dir.display()
                ),
            ));
        }
    }
    check_private(&dir)?;
    Ok(dir)
}

/// Refuse a default lock directory that someone else could tamper with.
fn check_private(dir: &Path) -> anyhow::Result<()> {
    let refuse = |why: String| {
        Failure::error(
            NO_PERM,
            format!(
                "refusing the default lock directory {}: {why}; remove it, or pass a lock directory with --locks DIR or LOCKBYDIR_DIR",
                dir.display()
            ),
        )
    };
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| refuse(format!("cannot read it ({e})")))?;
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(refuse(format!(
            "it is owned by uid {}, not by you (uid {uid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "it is writable by others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}
