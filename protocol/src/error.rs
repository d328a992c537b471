//! Errors of the lock protocol.

use std::fmt;

use crate::entry::Holder;
use crate::fs::FsError;
use crate::name::NameError;

/// Why a lock operation failed. Contention and running out of patience are not errors (see
/// [`crate::Outcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The lock name was refused.
    InvalidName(NameError),
    /// An option is out of range; the string says which and why.
    InvalidOption(String),
    /// A filesystem operation failed unexpectedly.
    Io {
        /// The operation (`rename`, `read-dir`, ...).
        operation: &'static str,
        /// The path, relative to the lock directory.
        path: String,
        /// What the filesystem said.
        source: FsError,
    },
    /// A lockdir holds something the protocol never writes (for example two state entries
    /// for longer than a concurrent rename could explain).
    Corrupt {
        /// The lockdir, relative to the lock directory.
        path: String,
        /// What was found.
        detail: String,
    },
    /// The lock changed hands so fast that its state could not be read consistently.
    Unsettled {
        /// The lockdir, relative to the lock directory.
        path: String,
    },
    /// Every fencing token of this lock has been handed out (its last fence is `u64::MAX`):
    /// no acquisition can get a greater one, and a fence must never repeat, so none is
    /// granted. Nothing was changed.
    FencesExhausted {
        /// The lockdir, relative to the lock directory.
        path: String,
    },
    /// The handle does not hold the lock.
    NotHeld,
    /// The handle already holds the lock.
    AlreadyHeld,
    /// The handle held the lock, but it was taken over (or removed) since.
    Compromised {
        /// The fencing token this handle held.
        fence: u64,
        /// Who holds it now, if anyone.
        now_held_by: Option<Holder>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(e) => write!(f, "invalid lock name: {e}"),
            Error::InvalidOption(e) => write!(f, "invalid lock option: {e}"),
            Error::Io {
                operation,
                path,
                source,
            } => write!(
                f,
                "{operation} `{path}` in the lock directory failed: {}",
                source.message
            ),
            Error::Corrupt { path, detail } => {
                let name = path
                    .strip_suffix(crate::name::LOCKDIR_SUFFIX)
                    .unwrap_or(path);
                write!(
                    f,
                    "lockdir `{path}` holds something lockbydir never writes ({detail}); \
                     if no process uses this lock, `lockbydir repair {name}` makes it usable \
                     again and keeps its fence (removing `{path}` instead restarts its fences \
                     at 1, which breaks any resource that rejects fences lower than one it saw)"
                )
            }
            Error::Unsettled { path } => write!(
                f,
                "the state of `{path}` kept changing while it was read; try again"
            ),
            Error::FencesExhausted { path } => write!(
                f,
                "lock `{path}` has handed out its last fencing token ({}), so it grants no more \
                 (a fence must never repeat); use a lock of another name, or, once every \
                 resource that checks this lock's fences accepts them starting again from 1, \
                 remove `{path}` while no process uses it",
                u64::MAX
            ),
            Error::NotHeld => write!(f, "this handle does not hold the lock"),
            Error::AlreadyHeld => write!(f, "this handle already holds the lock"),
            Error::Compromised { fence, now_held_by } => {
                write!(f, "the lock held with fence {fence} expired and was lost")?;
                match now_held_by {
                    Some(h) => write!(f, "; it is now held by `{}` (fence {})", h.label, h.fence),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Error::InvalidName(e)
    }
}
