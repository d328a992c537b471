//! lockbydir's own exit codes (sysexits.h), distinct from the 0-63 a command or plugin uses
//! for itself, and how an error maps to one.

use std::fmt;

use lockbydir::Error;
use lockbydir::types as wit;
use lockbydir_cli::compose::ComposeError;

/// EX_USAGE: the command line is wrong (unknown flag, bad value, bad lock name).
pub const USAGE: u8 = 64;
/// EX_DATAERR: a lockdir holds something lockbydir never writes (see `lockbydir repair`), or
/// has handed out its last fence.
pub const DATA_ERR: u8 = 65;
/// EX_NOINPUT: the lock directory does not exist or is not a directory.
pub const NO_INPUT: u8 = 66;
/// EX_UNAVAILABLE: the lock component cannot be loaded or compiled, or another backend (etcd)
/// cannot be reached.
pub const UNAVAILABLE: u8 = 69;
/// EX_SOFTWARE: the lock was lost while the command ran (compromised), or an internal error.
pub const SOFTWARE: u8 = 70;
/// EX_OSERR: the system refused something lockbydir needs (signal handling, a thread).
pub const OS_ERR: u8 = 71;
/// EX_CANTCREAT: an output file (`compose -o`) cannot be written.
pub const CANT_CREAT: u8 = 73;
/// EX_IOERR: a filesystem operation in the lock directory failed.
pub const IO_ERR: u8 = 74;
/// EX_TEMPFAIL: the lock stayed busy until patience ran out (`exec -E` changes it).
pub const TEMP_FAIL: u8 = 75;
/// EX_NOPERM: the lock directory may not be used (not writable, owned by someone else,
/// writable by others).
pub const NO_PERM: u8 = 77;
/// A plugin trapped (a panic, an `unreachable`, an out-of-bounds access): 128 + SIGABRT, what
/// a shell reports for a native program that aborts, and what `wasmtime run` exits with for
/// a trap. Outside the 0-63 a plugin uses and the codes above, which are lockbydir's own.
pub const PLUGIN_TRAPPED: u8 = 134;

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What failed and what to do, without internals.
    pub message: String,
    /// Lines printed under the message, each on its own (a WebAssembly backtrace's frames).
    pub details: Vec<String>,
}

impl Failure {
    /// An error exiting with `code`.
    pub fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        Self::with_details(code, message, Vec::new())
    }

    /// An error exiting with `code`, with lines to print under its message.
    pub fn with_details(
        code: u8,
        message: impl Into<String>,
        details: Vec<String>,
    ) -> anyhow::Error {
        anyhow::Error::new(Failure {
            code,
            message: message.into(),
            details,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: the first cause in its chain that says which.
pub fn code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::LockDir { .. } | Error::GrantedDir { .. } => NO_INPUT,
                Error::Component { .. } => UNAVAILABLE,
                Error::Backend { .. } => UNAVAILABLE,
                Error::Lock { error, .. } => match error {
                    wit::Error::InvalidName(_) | wit::Error::InvalidOption(_) => USAGE,
                    wit::Error::Io(_) => IO_ERR,
                    wit::Error::Corrupt(_) | wit::Error::FencesExhausted(_) => DATA_ERR,
                    wit::Error::Denied(_) => NO_PERM,
                    _ => SOFTWARE,
                },
                Error::Limit { .. } => 1,
                Error::Trap { .. } => SOFTWARE,
                // Kinds added later: lockbydir's own failure all the same.
                #[allow(unreachable_patterns)]
                _ => SOFTWARE,
            };
        }
        if let Some(e) = cause.downcast_ref::<ComposeError>() {
            return match e {
                ComposeError::Read { .. } => NO_INPUT,
                ComposeError::OutputIsInput { .. } => USAGE,
                ComposeError::Write { .. } => CANT_CREAT,
                _ => DATA_ERR,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io_code(io.kind());
        }
    }
    1
}

/// The exit code for a failed operation on the lock directory itself.
pub fn io_code(kind: std::io::ErrorKind) -> u8 {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::NotFound | ErrorKind::NotADirectory => NO_INPUT,
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => NO_PERM,
        _ => IO_ERR,
    }
}
