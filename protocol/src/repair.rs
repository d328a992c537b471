//! Making a corrupt lockdir usable again without resetting its fence.
//!
//! A lockdir is corrupt when it holds no state entry but other names (`.DS_Store`, an entry
//! someone edited by hand, `free.18446744073709551616`), or more than one state entry (see
//! [`crate::entry`] and [`crate::lock`]). Removing it would work, but the next lockdir starts
//! at `free.0`, so fences restart at 1 and a resource that rejects fences lower than the
//! highest it saw would reject every holder from then on (or, if it does not check, accept
//! a stale holder's writes). [`repair`] instead makes the lockdir's state
//! `free.<f + 1>`, where `f` is the highest fence any state-like name in it records (`free.`,
//! `free+.`, `held.` or `held+.` followed by a decimal fence, canonical or not): the next
//! holder gets `f + 2`, above every fence handed out before, and the one more is a margin for
//! a fence that was handed out while the entry was being damaged.
//!
//! Steps, each one of the protocol's atomic directory operations:
//!
//! 1. Refuse when the lock may be in use: a held-looking name whose deadline has not passed
//!    by this clock, or (where the filesystem keeps timestamps) a lockdir changed more
//!    recently than the longest timeout its held-looking names record.
//! 2. Create `free.<f + 1>` inside the lockdir. From then on it has a state entry (and, if
//!    other state entries remain, is still corrupt, never empty: an empty lockdir would be
//!    replaced by a new one starting at `free.0`).
//! 3. Remove every other state-like name (they are empty directories); other names (a file
//!    such as `.DS_Store`, NFS's `.nfsXXXX`) are left: next to one state entry they are
//!    ignored.

use crate::entry::{Entry, LATEST_TIME_MS};
use crate::env::Env;
use crate::error::Error;
use crate::fs::{Fs, FsErrorKind};
use crate::lock::{LockState, MAX_TIMEOUT_MS, inspect};
use crate::name::LockName;

/// What [`repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repaired {
    /// The state entry the lockdir has now (`free.<fence>`).
    pub entry: String,
    /// The fence recorded in it; the next holder gets one more.
    pub fence: u64,
    /// The state-like names removed.
    pub removed: Vec<String>,
    /// Names left in place: not state-like (ignored next to the state entry), or state-like
    /// but not removable (the message says why).
    pub left: Vec<String>,
}

/// Why [`repair`] did nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairError {
    /// The lockdir is not corrupt: there is nothing to repair. Its state is attached.
    NotCorrupt(LockState),
    /// The lock may be in use, or its fence cannot be kept; the string says why and what to
    /// do.
    Refused(String),
    /// Reading or changing the lockdir failed.
    Failed(Error),
}

impl std::fmt::Display for RepairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepairError::NotCorrupt(LockState::Absent) => {
                write!(f, "there is no lockdir: nothing to repair")
            }
            RepairError::NotCorrupt(_) => {
                write!(f, "the lockdir is not corrupt: nothing to repair")
            }
            RepairError::Refused(why) => write!(f, "{why}"),
            RepairError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RepairError {}

/// What a state-like name records, read leniently (it may not be canonical).
struct Loose {
    /// The fence, `None` if its digits do not fit in a u64.
    fence: Option<u64>,
    /// For a held-looking name: its deadline and timeout, where they parse.
    deadline_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

/// `Some` if `name` looks like a state entry: `free.`, `free+.`, `held.` or `held+.` and a
/// decimal fence.
fn loose(name: &str) -> Option<Loose> {
    let mut parts = name.split('.');
    let held = match parts.next()? {
        "free" | "free+" => false,
        "held" | "held+" => true,
        _ => return None,
    };
    let digits = parts.next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
    let _since = parts.next();
    // A deadline no clock reaches, or a timeout above the maximum, is no sign of a live
    // holder (no holder can have written it): it must not make the repair wait for ever.
    Some(Loose {
        fence: digits.parse().ok(),
        deadline_ms: number(parts.next()).filter(|&d| held && d <= LATEST_TIME_MS),
        timeout_ms: number(parts.next()).filter(|&t| held && t <= MAX_TIMEOUT_MS),
    })
}

fn io(operation: &'static str, path: String, source: crate::fs::FsError) -> RepairError {
    RepairError::Failed(Error::Io {
        operation,
        path,
        source,
    })
}

/// Make lock `name`'s corrupt lockdir usable again, keeping its fence (see the module
/// documentation). Refuses, changing nothing, when the lockdir is not corrupt, when the lock
/// may be in use, and when its fences are exhausted.
pub fn repair(fs: &impl Fs, env: &impl Env, name: &LockName) -> Result<Repaired, RepairError> {
    let lockdir = name.lockdir();
    match inspect(fs, env, name) {
        Ok(state) => return Err(RepairError::NotCorrupt(state)),
        Err(Error::Corrupt { .. }) => {}
        Err(e) => return Err(RepairError::Failed(e)),
    }
    let names = fs
        .read_dir(&lockdir)
        .map_err(|e| io("read-dir", lockdir.clone(), e))?;
    let stateful: Vec<(&String, Loose)> = names
        .iter()
        .filter_map(|n| loose(n).map(|l| (n, l)))
        .collect();
    if let Some((n, _)) = stateful.iter().find(|(_, l)| l.fence.is_none()) {
        return Err(RepairError::Refused(format!(
            "`{lockdir}/{n}` records a fence beyond the largest there can be, so no fence can \
             follow it; only removing `{lockdir}` makes the lock usable again, and fences then \
             restart at 1 (a resource that rejects fences lower than one it saw must be told)"
        )));
    }
    let now = env.now_ms();
    if let Some((n, l)) = stateful
        .iter()
        .find(|(_, l)| l.deadline_ms.is_some_and(|d| d >= now))
    {
        return Err(RepairError::Refused(format!(
            "`{lockdir}/{n}` looks held until {} ms since the epoch, {} ms from now: wait \
             until then (or stop its holder) and repair again",
            l.deadline_ms.unwrap_or_default(),
            l.deadline_ms.unwrap_or_default().saturating_sub(now)
        )));
    }
    let longest = stateful.iter().filter_map(|(_, l)| l.timeout_ms).max();
    if let Some(timeout) = longest {
        let changed = fs
            .modified_ms(&lockdir)
            .map_err(|e| io("stat", lockdir.clone(), e))?;
        let fs_now = crate::lock::filesystem_now(fs, env, name).map_err(RepairError::Failed)?;
        if let (Some(changed), Some(fs_now)) = (changed, fs_now)
            && fs_now.saturating_sub(changed) <= timeout
        {
            return Err(RepairError::Refused(format!(
                "`{lockdir}` changed {} ms ago by the filesystem's clock, within the {timeout} ms \
                 timeout one of its entries records, so its holder may still be alive: repair \
                 again after that",
                fs_now.saturating_sub(changed)
            )));
        }
    }
    let highest = stateful
        .iter()
        .filter_map(|(_, l)| l.fence)
        .max()
        .unwrap_or(0);
    let fence = highest.checked_add(1).ok_or_else(|| {
        RepairError::Refused(format!(
            "`{lockdir}` records fence {highest}, the largest there can be, so no fence can \
             follow it; only removing `{lockdir}` makes the lock usable again, and fences then \
             restart at 1 (a resource that rejects fences lower than one it saw must be told)"
        ))
    })?;
    let entry = Entry::Free {
        fence,
        waiters: false,
    }
    .encode();
    let path = format!("{lockdir}/{entry}");
    match fs.create_dir(&path) {
        Err(e) if e.kind != FsErrorKind::AlreadyExists => return Err(io("create-dir", path, e)),
        _ => {}
    }
    let mut removed = Vec::new();
    let mut left = Vec::new();
    for n in &names {
        if *n == entry {
            continue;
        }
        if loose(n).is_none() {
            left.push(n.clone());
            continue;
        }
        match fs.remove_dir(&format!("{lockdir}/{n}")) {
            Ok(()) => removed.push(n.clone()),
            Err(e) if e.kind == FsErrorKind::NotFound => {}
            Err(e) => left.push(format!("{n} ({})", e.message)),
        }
    }
    // What the lock looks like now: a state entry must be readable.
    match inspect(fs, env, name) {
        Ok(_) => Ok(Repaired {
            entry,
            fence,
            removed,
            left,
        }),
        Err(e) => Err(RepairError::Failed(e)),
    }
}
