//! Typed errors of the host's Rust API.

use std::path::PathBuf;

use crate::bindings::wit;
use crate::display::escape;

/// What went wrong in the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lock directory cannot be used.
    #[error("lock directory {path}: {message}; create it or pass another with --locks")]
    LockDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A directory granted to a plugin cannot be opened.
    #[error("directory {path} granted to the plugin: {message}")]
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
    #[error("plugin `{plugin}` was stopped: it exceeded {limit}")]
    Limit {
        /// The plugin's name.
        plugin: String,
        /// Which limit, naming its flag.
        limit: String,
    },
    /// The lock component returned an error value (bad name, I/O failure, compromise...).
    #[error("lock `{lock}` in {}: {}{}", .dir.display(), describe(.error), hint(.error))]
    Lock {
        /// The lock's name.
        lock: String,
        /// The lock directory.
        dir: PathBuf,
        /// The component's error value.
        error: wit::Error,
    },
    /// The lock component trapped: a bug in it or in the host.
    #[error("the lock component trapped while {doing}: {reason:#}")]
    Trap {
        /// The call that trapped.
        doing: String,
        /// wasmtime's explanation (shown in the message, not as a separate cause).
        reason: wasmtime::Error,
    },
    /// A lock backend other than the lock directory cannot be reached or used (for example
    /// etcd down at start).
    #[error("{place}: {message}")]
    Backend {
        /// Which backend, and where (for etcd: its endpoints).
        place: String,
        /// What failed and what to do.
        message: String,
    },
}

/// What to do about an error, where there is something to do.
fn hint(e: &wit::Error) -> &'static str {
    match e {
        wit::Error::Io(_) => {
            " (check that the lock directory is writable and its filesystem healthy)"
        }
        _ => "",
    }
}

/// A readable sentence for a lock error value.
pub fn describe(e: &wit::Error) -> String {
    match e {
        wit::Error::InvalidName(why) => format!("invalid lock name: {}", escape(why)),
        wit::Error::InvalidOption(why) => format!("invalid option: {}", escape(why)),
        wit::Error::Io(io) => format!(
            "{} `{}` in the lock directory failed: {}",
            escape(&io.operation),
            escape(&io.path),
            escape(&io.message)
        ),
        wit::Error::NotHeld => "not held by this handle".to_owned(),
        wit::Error::AlreadyHeld => "already held by this handle".to_owned(),
        wit::Error::Denied(why) => format!("denied by the host's policy: {}", escape(why)),
        wit::Error::Corrupt(why) => escape(why).to_string(),
        wit::Error::Compromised(c) => {
            let by = c.now_held_by.as_ref().map_or(String::new(), |h| {
                format!("; now held by `{}` (fence {})", escape(&h.holder), h.fence)
            });
            format!(
                "compromised: the lock held with fence {} expired and was taken over{by}",
                c.fence
            )
        }
        wit::Error::FencesExhausted(path) => format!(
            "lock `{path}` has handed out its last fencing token ({}), so it grants no more \
             (a fence must never repeat); use a lock of another name, or, once every resource \
             that checks this lock's fences accepts them starting again from 1, remove \
             `{path}` while no process uses it",
            u64::MAX,
            path = escape(path)
        ),
    }
}
