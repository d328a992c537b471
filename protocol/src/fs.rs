//! The filesystem operations the protocol needs, and their implementation on `std::fs`.
//!
//! The protocol only creates, renames, removes and lists directories. It never writes a file
//! and never reads a timestamp, so it works on any WASI host (including ones that refuse file
//! writes) and does not depend on how a filesystem stores mtimes.

use std::io;
use std::path::PathBuf;

/// How a filesystem operation failed, as far as the protocol cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsErrorKind {
    /// The path (or, for `rename`, the source) does not exist.
    NotFound,
    /// The path to create already exists.
    AlreadyExists,
    /// Anything else (permissions, a non-empty target, I/O). The protocol does not branch on
    /// these by kind: where they are expected it re-reads the state instead, because WASI does
    /// not report ENOTEMPTY with a stable kind.
    Other,
}

/// A failed filesystem operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsError {
    /// What kind of failure it was.
    pub kind: FsErrorKind,
    /// The system's message.
    pub message: String,
}

impl FsError {
    /// A failure of the given kind with the given message.
    pub fn new(kind: FsErrorKind, message: impl Into<String>) -> Self {
        FsError {
            kind,
            message: message.into(),
        }
    }
}

impl From<io::Error> for FsError {
    fn from(err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => FsErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => FsErrorKind::AlreadyExists,
            _ => FsErrorKind::Other,
        };
        FsError::new(kind, err.to_string())
    }
}

/// Directory operations relative to the lock directory. Paths use `/` and never leave it.
///
/// Each call is one atomic filesystem step; the model checker schedules other actors between
/// any two of them.
pub trait Fs {
    /// Create one directory; fails with `AlreadyExists` if the path exists.
    fn create_dir(&self, path: &str) -> Result<(), FsError>;
    /// Remove one empty directory.
    fn remove_dir(&self, path: &str) -> Result<(), FsError>;
    /// Atomically rename `from` to `to` (POSIX semantics: replaces `to` if it is an empty
    /// directory, fails if it is a non-empty one; `NotFound` if `from` is missing).
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError>;
    /// The names inside a directory (without `.` and `..`), in any order.
    fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError>;
    /// The modification time of `path` on the filesystem's own clock, in ms since the Unix
    /// epoch; `None` if this filesystem keeps no usable timestamps (the default).
    fn modified_ms(&self, path: &str) -> Result<Option<u64>, FsError> {
        let _ = path;
        Ok(None)
    }
    /// Whether `path` exists: the cheapest look at whether a lock changed state. The default
    /// lists the parent directory; implementations should override it with one `stat`.
    fn exists(&self, path: &str) -> Result<bool, FsError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or((".", path));
        Ok(self.read_dir(dir)?.iter().any(|n| n == name))
    }
}

/// A borrowed filesystem is one too (so that a [`crate::Lock`] can work on a caller's).
impl<T: Fs + ?Sized> Fs for &T {
    fn create_dir(&self, path: &str) -> Result<(), FsError> {
        (**self).create_dir(path)
    }
    fn remove_dir(&self, path: &str) -> Result<(), FsError> {
        (**self).remove_dir(path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        (**self).rename(from, to)
    }
    fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        (**self).read_dir(path)
    }
    fn modified_ms(&self, path: &str) -> Result<Option<u64>, FsError> {
        (**self).modified_ms(path)
    }
    fn exists(&self, path: &str) -> Result<bool, FsError> {
        (**self).exists(path)
    }
}

/// How many times a listing that failed while its directory still exists is repeated.
const LISTING_RETRIES: usize = 32;

/// The names in `dir` (not `.` and `..`).
#[cfg(not(target_os = "linux"))]
fn list(dir: &std::path::Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        // Names that are not UTF-8 cannot be ours; skip them rather than fail.
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// How many bytes of entries one `getdents64` may return: about 450 queue tickets, so that a
/// line of up to that many is listed in one call (and one more that finds the end).
#[cfg(target_os = "linux")]
const LISTING_BUFFER: usize = 32 * 1024;

/// The names in `dir` (not `.` and `..`): as `std::fs::read_dir`, without the `fstat` that
/// glibc's `opendir` makes (a listing is 4 system calls, not 5).
#[cfg(target_os = "linux")]
fn list(dir: &std::path::Path) -> io::Result<Vec<String>> {
    use rustix::fs::{Mode, OFlags, RawDir, open};
    let fd = open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut buffer = Vec::<u8>::with_capacity(LISTING_BUFFER);
    let mut entries = RawDir::new(&fd, buffer.spare_capacity_mut());
    let mut names = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        // Names that are not UTF-8 cannot be ours; skip them rather than fail.
        if let Ok(name) = std::str::from_utf8(name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// [`Fs`] on `std::fs`, rooted at a directory. Inside the lock component the root is `.`, the
/// preopened lock directory.
#[derive(Clone, Debug)]
pub struct StdFs {
    root: PathBuf,
}

impl StdFs {
    /// Operate inside `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StdFs { root: root.into() }
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

impl Fs for StdFs {
    fn create_dir(&self, path: &str) -> Result<(), FsError> {
        Ok(std::fs::create_dir(self.at(path))?)
    }

    fn remove_dir(&self, path: &str) -> Result<(), FsError> {
        Ok(std::fs::remove_dir(self.at(path))?)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        Ok(std::fs::rename(self.at(from), self.at(to))?)
    }

    fn modified_ms(&self, path: &str) -> Result<Option<u64>, FsError> {
        let modified = std::fs::metadata(self.at(path))?.modified();
        // A platform without mtimes, or one before the epoch, gives no usable reading.
        Ok(modified
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64))
    }

    fn exists(&self, path: &str) -> Result<bool, FsError> {
        match std::fs::symlink_metadata(self.at(path)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let dir = self.at(path);
        let mut last = None;
        for _ in 0..LISTING_RETRIES {
            match list(&dir) {
                Ok(names) => return Ok(names),
                // Under WASI a listing stats every entry, so an entry renamed meanwhile fails
                // the whole listing with NotFound although the directory exists: that race,
                // and only that, is retried. Any other failure (EACCES, ENOTDIR, ELOOP, I/O)
                // is what the filesystem says about the directory, reported as it is.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && std::fs::metadata(&dir).is_ok_and(|m| m.is_dir()) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e.into()),
            }
        }
        let e = last.expect("at least one listing failed");
        Err(FsError::new(
            FsErrorKind::Other,
            format!("listing kept failing while entries changed: {e}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lockbydir-fs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_listing_has_every_name_however_many_and_skips_names_that_are_not_utf8() {
        let dir = scratch("list");
        // More ticket-sized names than one read of the directory holds.
        let mut expected: Vec<String> = (0..600u64)
            .map(|i| {
                format!(
                    "wait.{}.{i:016x}.{}",
                    1_796_694_151_942_u64 + i,
                    1_796_694_153_339_u64
                )
            })
            .collect();
        for name in &expected {
            std::fs::create_dir(dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("notes"), "").unwrap();
        expected.push("notes".into());
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let odd = std::ffi::OsStr::from_bytes(b"free.\xff");
            std::fs::create_dir(dir.join(odd)).unwrap();
        }
        let fs = StdFs::new(&dir);
        let mut listed = fs.read_dir(".").unwrap();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_listing_of_a_missing_directory_or_a_file_says_so() {
        let dir = scratch("list-errors");
        std::fs::write(dir.join("file"), "").unwrap();
        let fs = StdFs::new(&dir);
        assert_eq!(
            fs.read_dir("absent").unwrap_err().kind,
            FsErrorKind::NotFound
        );
        let err = fs.read_dir("file").unwrap_err();
        assert_ne!(err.kind, FsErrorKind::NotFound, "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
