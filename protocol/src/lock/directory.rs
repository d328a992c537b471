//! The lockdir itself: reading its one state entry, creating it, tidying what crashed
//! processes leave next to it, and reading the filesystem's clock with a probe directory.

use crate::entry::Entry;
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsError, FsErrorKind};
use crate::name::LockName;

/// How many times a read that saw no state entry, or more than one (a rename was in flight
/// while the directory was listed), is repeated before the lockdir counts as broken.
pub(super) const READ_RETRIES: usize = 8;

pub(super) fn io(operation: &'static str, path: String, source: FsError) -> Error {
    Error::Io {
        operation,
        path,
        source,
    }
}

/// What one look at a lockdir found.
pub(super) enum Read {
    /// No lockdir, or one that stays empty (made by hand, or by the original lockbydir.py):
    /// it carries no state, and creating the lock replaces it.
    Missing,
    /// The state entry.
    Entry(Entry),
    /// Every listing raced with a rename (it showed the entry twice, or not at all) and they
    /// kept changing: the lock is busy changing hands.
    Unsettled,
}

/// Read the state entry of `lockdir`.
///
/// Listing a directory is not atomic with respect to a rename inside it, so a listing can
/// show the old and the new name, or neither. Such a listing is repeated; only one that stays
/// the same every time is believed: an empty one means no state; one with names but no state
/// entry (names the protocol never writes, see [`crate::entry`]), or with two entries, means
/// damage, reported as [`Error::Corrupt`] at once rather than waited on.
pub(super) fn read_entry(fs: &impl Fs, lockdir: &str) -> Result<Read, Error> {
    let mut first: Option<Vec<String>> = None;
    let mut stable = true;
    for _ in 0..READ_RETRIES {
        let mut names = match fs.read_dir(lockdir) {
            Ok(names) => names,
            Err(e) if e.kind == FsErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(io("read-dir", lockdir.to_owned(), e)),
        };
        let mut entries = names.iter().filter_map(|n| Entry::parse(n));
        if let (Some(only), None) = (entries.next(), entries.next()) {
            return Ok(Read::Entry(only));
        }
        names.sort();
        match &first {
            None => first = Some(names),
            Some(seen) => stable &= *seen == names,
        }
    }
    let names = first.unwrap_or_default();
    let entries: Vec<&String> = names.iter().filter(|n| Entry::parse(n).is_some()).collect();
    let detail = match (stable, names.len(), entries.len()) {
        (false, _, _) => return Ok(Read::Unsettled),
        (true, 0, _) => return Ok(Read::Missing),
        (true, n, 0) => format!(
            "no state entry, only {n} name{} lockbydir never writes: {}",
            if n == 1 { "" } else { "s" },
            names.join(", ")
        ),
        (true, _, n) => format!(
            "{n} state entries: {}",
            entries
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(Error::Corrupt {
        path: lockdir.to_owned(),
        detail,
    })
}

/// Create a directory whose name is ours alone (it carries a fresh random token). On a network
/// filesystem a retried `mkdir` that did succeed reports that the directory exists: with a name
/// nobody else uses, that can only be our own, so it counts as made.
pub(super) fn create_own_dir(fs: &impl Fs, path: &str) -> Result<(), Error> {
    match fs.create_dir(path) {
        Err(e) if e.kind != FsErrorKind::AlreadyExists => Err(io("create-dir", path.to_owned(), e)),
        _ => Ok(()),
    }
}

/// Create a directory others may be creating too (the queue directory): it existing already
/// is success.
pub(super) fn create_shared_dir(fs: &impl Fs, path: &str) -> Result<(), Error> {
    create_own_dir(fs, path)
}

/// The filesystem's "now": the mtime of a probe directory made for the purpose (`None` if the
/// filesystem keeps no timestamps).
pub(crate) fn filesystem_now(
    fs: &impl Fs,
    env: &impl Env,
    name: &LockName,
) -> Result<Option<u64>, Error> {
    let probe = format!(".{name}.{:016x}.probe", env.random_u64());
    create_own_dir(fs, &probe)?;
    let now = fs.modified_ms(&probe);
    let _ = fs.remove_dir(&probe);
    now.map_err(|e| io("stat", probe, e))
}

/// Scratch directories (staging and probe) older than this, by the filesystem's clock, were
/// left by a process that crashed while using them.
pub const LEFTOVER_AGE_MS: u64 = 10 * 60 * 1000;

/// Whether `entry` of the lock directory is a scratch directory of lock `name`:
/// `.<name>.<16 hex digits>.staging` or `.probe`.
pub(super) fn is_scratch_of(entry: &str, name: &LockName) -> bool {
    let Some(rest) = entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(name.as_str()))
    else {
        return false;
    };
    let Some(token) = rest.strip_prefix('.').and_then(|r| {
        r.strip_suffix(".staging")
            .or_else(|| r.strip_suffix(".probe"))
    }) else {
        return false;
    };
    token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Remove lock `name`'s scratch directories that crashed processes left behind, judged old by
/// the filesystem's clock. Best effort: nothing here affects the lock's state, and a filesystem
/// without timestamps is left alone.
pub(super) fn sweep_leftovers(fs: &impl Fs, env: &impl Env, name: &LockName) {
    let Ok(entries) = fs.read_dir(".") else {
        return;
    };
    let scratch: Vec<String> = entries
        .into_iter()
        .filter(|e| is_scratch_of(e, name))
        .collect();
    if scratch.is_empty() {
        return;
    }
    let Ok(Some(now)) = filesystem_now(fs, env, name) else {
        return;
    };
    for dir in scratch {
        if let Ok(Some(made)) = fs.modified_ms(&dir)
            && now.saturating_sub(made) > LEFTOVER_AGE_MS
        {
            let _ = fs.remove_dir(&format!("{dir}/{}", INITIAL.encode()));
            let _ = fs.remove_dir(&dir);
        }
    }
}

/// The state a new lockdir starts with.
pub(super) const INITIAL: Entry = Entry::Free {
    fence: 0,
    waiters: false,
};

/// Create `N.lockdir` holding `free.0`, unless someone else creates it first.
pub(super) fn create_lockdir(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<(), Error> {
    let lockdir = name.lockdir();
    let staging = format!(".{name}.{:016x}.staging", env.random_u64());
    let initial = format!("{staging}/{}", INITIAL.encode());
    let cleanup = || {
        let _ = fs.remove_dir(&initial);
        let _ = fs.remove_dir(&staging);
    };
    create_own_dir(fs, &staging)?;
    if let Err(e) = create_own_dir(fs, &initial) {
        cleanup();
        return Err(e);
    }
    if let Err(e) = fs.rename(&staging, &lockdir) {
        cleanup();
        // Losing to another creator is expected: the lockdir exists (and is not empty). Any
        // other failure leaves no lockdir behind.
        if fs.read_dir(&lockdir).is_err() {
            return Err(io("rename", format!("{staging} -> {lockdir}"), e));
        }
    }
    Ok(())
}
