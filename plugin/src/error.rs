//! Why a lock call failed, with messages a person can act on.

use std::fmt;

use crate::Holder;
use crate::raw::lockbydir::lock::types as wit;

/// Why a call failed. Contention and running out of patience are not errors: they are
/// [`Attempt::Busy`](crate::Attempt::Busy).
///
/// Its [`Display`](fmt::Display) says what failed and what to do; [`Error::case`] gives the
/// interface's name for the case, for logs and tests.
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::{Error, Lock};
///
/// match Lock::new("../elsewhere") {
///     Err(Error::InvalidName(why)) => eprintln!("pick another name: {why}"),
///     Err(e) => eprintln!("{e}"),
///     Ok(_) => unreachable!("a name with `/` is refused"),
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The lock name is unusable (empty, `.` or `..`, too long, or with `/`, `\` or a control
    /// or invisible character). The string says which rule it broke.
    InvalidName(String),
    /// An option is out of range (for example a zero lease). The string says which.
    InvalidOption(String),
    /// A filesystem operation failed in a way the lock protocol does not expect.
    Io {
        /// The operation, for example `rename`.
        operation: String,
        /// The path it was applied to, relative to the lock directory.
        path: String,
        /// What the filesystem said, with the error's name (for example `EROFS`).
        message: String,
    },
    /// The call needs this handle to hold the lock, and it does not.
    NotHeld,
    /// The lock expired and was taken over (or removed) while this handle held it: whatever
    /// was done under it after its deadline was not protected.
    Compromised {
        /// The fencing token this handle held.
        fence: u64,
        /// Who holds the lock now, if anyone does.
        now_held_by: Option<Holder>,
    },
    /// This handle already holds the lock.
    AlreadyHeld,
    /// The host's policy for this plugin refused the request. The string says which rule.
    Denied(String),
    /// The lock holds something lockbydir never writes; it must be repaired
    /// (`lockbydir repair`). The string names the lock and what was found.
    Corrupt(String),
    /// The lock has handed out its last fencing token. The string names the lock.
    FencesExhausted(String),
    /// The service that keeps the locks (for example etcd) did not answer; nothing is known to
    /// have changed. The string says what failed.
    Unavailable(String),
}

impl Error {
    /// The interface's name for this case (`invalid-name`, `compromised`, ...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// if let Err(e) = lockbydir_plugin::Lock::new("") {
    ///     assert_eq!(e.case(), "invalid-name");
    /// }
    /// ```
    pub fn case(&self) -> &'static str {
        match self {
            Error::InvalidName(_) => "invalid-name",
            Error::InvalidOption(_) => "invalid-option",
            Error::Io { .. } => "io",
            Error::NotHeld => "not-held",
            Error::Compromised { .. } => "compromised",
            Error::AlreadyHeld => "already-held",
            Error::Denied(_) => "denied",
            Error::Corrupt(_) => "corrupt",
            Error::FencesExhausted(_) => "fences-exhausted",
            Error::Unavailable(_) => "unavailable",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(why) => write!(f, "invalid lock name: {why}"),
            Error::InvalidOption(why) => write!(f, "invalid lock option: {why}"),
            Error::Io {
                operation,
                path,
                message,
            } => write!(
                f,
                "{operation} of `{}` in the lock directory failed: {message}",
                path.escape_debug()
            ),
            Error::NotHeld => write!(f, "this handle does not hold the lock: acquire it first"),
            Error::AlreadyHeld => write!(
                f,
                "this handle already holds the lock: release it before acquiring it again"
            ),
            Error::Compromised { fence, now_held_by } => {
                write!(
                    f,
                    "lock compromised: it expired while held with fence {fence} and was taken over"
                )?;
                if let Some(h) = now_held_by {
                    write!(f, " by `{}` (fence {})", h.label.escape_debug(), h.fence)?;
                }
                write!(
                    f,
                    "; work done after its deadline was not protected (refresh sooner, or \
                     choose a longer lease)"
                )
            }
            Error::Denied(why) => write!(f, "the host's policy refused: {why}"),
            Error::Corrupt(why) => write!(f, "the lock cannot be used until repaired: {why}"),
            Error::FencesExhausted(why) => write!(
                f,
                "no more fencing tokens: {why} (use a lock of another name)"
            ),
            Error::Unavailable(why) => write!(
                f,
                "the lock service did not answer: {why} (trying again later may succeed)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The interface's error, as this crate's.
///
/// # Examples
///
/// ```no_run
/// use lockbydir_plugin::{Error, raw::lockbydir::lock::lock::queue};
///
/// let waiting = queue("db").map_err(Error::from)?.live;
/// # Ok::<(), Error>(())
/// ```
impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::InvalidName(why) => Error::InvalidName(why),
            wit::Error::InvalidOption(why) => Error::InvalidOption(why),
            wit::Error::Io(io) => Error::Io {
                operation: io.operation,
                path: io.path,
                message: io.message,
            },
            wit::Error::NotHeld => Error::NotHeld,
            wit::Error::Compromised(c) => Error::Compromised {
                fence: c.fence,
                now_held_by: c.now_held_by.map(Holder::from),
            },
            wit::Error::AlreadyHeld => Error::AlreadyHeld,
            wit::Error::Denied(why) => Error::Denied(why),
            wit::Error::Corrupt(why) => Error::Corrupt(why),
            wit::Error::FencesExhausted(why) => Error::FencesExhausted(why),
            wit::Error::Unavailable(why) => Error::Unavailable(why),
        }
    }
}
