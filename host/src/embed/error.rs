//! Why a [`super::LockbydirCtx`] could not be built.

use std::path::PathBuf;

use crate::policy::PatternError;

/// Why [`super::LockbydirCtxBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No backend was chosen: the builder does not know where the locks live.
    #[error("no lock directory was given: call `.lock_dir(path)` on the builder before `build`")]
    NoBackend,
    /// A pattern given to [`super::LockbydirCtxBuilder::allow_lock`] is not a valid pattern.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// [`super::LockbydirCtxBuilder::max_handles`] asked for more handles than can be honoured.
    #[error("max_handles({given}) is more than can be honoured (at most {max})")]
    TooManyHandles {
        /// What was asked for.
        given: usize,
        /// The most there may be ([`crate::limits::MAX_HANDLES_HONOURED`]).
        max: usize,
    },
    /// The lock directory does not exist, is not a directory, or cannot be opened.
    #[error("lock directory {}: {message}; create it, or pass another to `.lock_dir`", .path.display())]
    LockDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The lock component could not be instantiated (see [`crate::Error`]).
    #[error(transparent)]
    Host(crate::Error),
}

impl From<crate::Error> for BuildError {
    fn from(e: crate::Error) -> Self {
        match e {
            // The library's own message names the CLI's `--locks`: say it for an embedder.
            crate::Error::LockDir { path, message } => BuildError::LockDir { path, message },
            other => BuildError::Host(other),
        }
    }
}
