//! The typed errors of the host library.

use std::path::PathBuf;

use crate::bindings::{LockError, types};
use crate::display::escape;

/// What went wrong in the host library.
///
/// # Examples
///
/// The interface's error values are [`Error::Lock`], with the lock and where it lives:
///
/// ```
/// use lockbydir::{Backend, Error, Place, RuntimeBuilder};
/// use lockbydir::types::{self, Options};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("lockbydir-doc-error-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let runtime = RuntimeBuilder::new().build()?;
/// let mut locks = Place::LockDir(dir.clone()).open(&runtime)?;
/// let err = locks.open("a/b", &Options::default()).unwrap_err();
/// assert!(matches!(err.lock_error(), Some(types::Error::InvalidName(_))));
/// assert!(err.to_string().starts_with("lock `a/b` in "), "{err}");
///
/// // A lock directory that is not there is said so before any lock is touched.
/// let err = Place::LockDir(dir.join("missing")).open(&runtime).err().unwrap();
/// assert!(matches!(err, Error::LockDir { .. }), "{err}");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock directory cannot be used.
    #[error("lock directory {}: {message}", .path.display())]
    LockDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A directory granted to a plugin cannot be opened.
    #[error("directory {} granted to the plugin: {message}", .path.display())]
    GrantedDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A component could not be read, compiled or instantiated.
    #[error("{what}: {reason:#}")]
    Component {
        /// Which component, and what was being done with it.
        what: String,
        /// wasmtime's explanation (shown in the message, not as a separate cause).
        reason: wasmtime::Error,
    },
    /// A plugin was stopped because it exceeded one of its limits.
    #[error("plugin `{}` was stopped: it exceeded {limit}", escape(.plugin))]
    Limit {
        /// The plugin's name.
        plugin: String,
        /// Which limit.
        limit: crate::limits::LimitHit,
    },
    /// A lock call returned the interface's error value (bad name, I/O failure, compromise...).
    #[error("lock `{}` in {}: {}{}", escape(.lock), escape(.place), describe(.error), hint(.error))]
    Lock {
        /// The lock's name (`*` for a call about every lock).
        lock: String,
        /// Where the locks live: the lock directory, or `etcd URL,...`.
        place: String,
        /// The interface's error value.
        error: types::Error,
    },
    /// The lock component trapped: a bug in it or in the host.
    #[error("the lock component trapped while {doing}: {reason:#}")]
    Trap {
        /// The call that trapped.
        doing: String,
        /// wasmtime's explanation (shown in the message, not as a separate cause).
        reason: wasmtime::Error,
    },
    /// A backend other than a lock directory cannot be reached or used (for example etcd
    /// down at start).
    #[error("{place}: {message}")]
    Backend {
        /// Which backend, and where (for etcd: its endpoints).
        place: String,
        /// What failed and what to do.
        message: String,
    },
}

impl Error {
    /// The interface's error value, if this is one.
    pub fn lock_error(&self) -> Option<&types::Error> {
        match self {
            Error::Lock { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl Error {
    /// This error as a trap, for a host function whose call cannot fail with an error value
    /// (a trap keeps wasmtime's own explanation).
    pub(crate) fn into_trap(self) -> wasmtime::Error {
        match LockError::from(self) {
            LockError::Trap(trap) => trap,
            LockError::Value(value) => wasmtime::Error::msg(describe(&value)),
        }
    }
}

/// What a plugin's call gets for an error: the error value, or a trap for anything else.
impl From<Error> for LockError {
    fn from(e: Error) -> Self {
        match e {
            Error::Lock { error, .. } => LockError::Value(error),
            Error::Trap { reason, .. } | Error::Component { reason, .. } => LockError::Trap(reason),
            other => LockError::Trap(wasmtime::Error::msg(other.to_string())),
        }
    }
}

/// What to do about an error, where there is something to do.
fn hint(e: &types::Error) -> &'static str {
    match e {
        types::Error::Io(_) => {
            " (check that the lock directory is writable and its filesystem healthy)"
        }
        types::Error::Unavailable(_) => " (check that the cluster is up and reachable)",
        _ => "",
    }
}

/// A readable sentence for a lock error value, with everything that came from a lockdir or a
/// plugin escaped.
pub fn describe(e: &types::Error) -> String {
    match e {
        types::Error::InvalidName(why) => format!("invalid lock name: {}", escape(why)),
        types::Error::InvalidOption(why) => format!("invalid option: {}", escape(why)),
        types::Error::Io(io) => format!(
            "{} `{}` in the lock directory failed: {}",
            escape(&io.operation),
            escape(&io.path),
            escape(&io.message)
        ),
        types::Error::NotHeld => "not held by this handle".to_owned(),
        types::Error::AlreadyHeld => "already held by this handle".to_owned(),
        types::Error::Denied(why) => format!("denied by the host's policy: {}", escape(why)),
        types::Error::Corrupt(why) => escape(why).to_string(),
        types::Error::Compromised(c) => {
            let by = c.now_held_by.as_ref().map_or(String::new(), |h| {
                format!("; now held by `{}` (fence {})", escape(&h.holder), h.fence)
            });
            format!(
                "compromised: the lock held with fence {} expired and was taken over{by}",
                c.fence
            )
        }
        types::Error::FencesExhausted(path) => format!(
            "lock `{path}` has handed out its last fencing token ({}), so it grants no more \
             (a fence must never repeat); use a lock of another name, or, once every resource \
             that checks this lock's fences accepts them starting again from 1, remove \
             `{path}` while no process uses it",
            u64::MAX,
            path = escape(path)
        ),
        types::Error::Unavailable(why) => {
            format!("the lock service did not answer: {}", escape(why))
        }
    }
}
