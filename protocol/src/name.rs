//! Lock names: which are allowed, and where each lock lives in the lock directory.

use std::fmt;

/// The longest lock name, in bytes. Leaves room in a 255-byte directory name for the
/// `.lockdir` suffix and for the staging directory used to create the lockdir.
pub const MAX_NAME_BYTES: usize = 200;

/// The suffix that marks a lock's directory: lock `N` lives in `N.lockdir`.
pub const LOCKDIR_SUFFIX: &str = ".lockdir";

/// A validated lock name. It can never address anything outside the lock directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockName(String);

/// Why a lock name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is `.` or `..`.
    Dots,
    /// The name has more than [`MAX_NAME_BYTES`] bytes.
    TooLong(usize),
    /// The name contains a path separator, NUL or another control character, or an invisible
    /// formatting character (bidi controls, zero-width characters) that would let two
    /// different names look alike.
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "a lock name must not be empty"),
            NameError::Dots => write!(f, "a lock name must not be `.` or `..`"),
            NameError::TooLong(n) => write!(
                f,
                "a lock name may have at most {MAX_NAME_BYTES} bytes; this one has {n}"
            ),
            NameError::BadChar(c) => write!(
                f,
                "a lock name must not contain {c:?} (no `/`, `\\`, NUL, control characters, \
                 bidi controls or zero-width characters)"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Invisible characters that reorder or hide text: bidi embeddings, overrides, isolates and
/// marks, zero-width spaces and joiners, the byte-order mark and the soft hyphen. Two names
/// that differ only by these look the same in `status`.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

impl LockName {
    /// Check `name` and wrap it.
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name == "." || name == ".." {
            return Err(NameError::Dots);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong(name.len()));
        }
        if let Some(c) = name
            .chars()
            .find(|&c| c == '/' || c == '\\' || c.is_control() || is_invisible(c))
        {
            return Err(NameError::BadChar(c));
        }
        Ok(LockName(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lock's directory, relative to the lock directory: `N.lockdir`.
    pub fn lockdir(&self) -> String {
        format!("{}{LOCKDIR_SUFFIX}", self.0)
    }

    /// The directory of the lock's waiters' tickets: `<name>.queue` (made by the first waiter).
    pub fn queue_dir(&self) -> String {
        format!("{}.queue", self.0)
    }

    /// The lock name a directory entry of the lock directory stands for, if it is a lockdir.
    pub fn from_lockdir(entry: &str) -> Option<LockName> {
        LockName::new(entry.strip_suffix(LOCKDIR_SUFFIX)?).ok()
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["a", "bed", "db.migrate", "x y", "ünïcode", "...", ".hidden"] {
            assert_eq!(LockName::new(ok).unwrap().as_str(), ok);
        }
        assert!(LockName::new(&"n".repeat(MAX_NAME_BYTES)).is_ok());
    }

    #[test]
    fn refuses_names_that_could_escape_or_break_paths() {
        assert_eq!(LockName::new(""), Err(NameError::Empty));
        assert_eq!(LockName::new("."), Err(NameError::Dots));
        assert_eq!(LockName::new(".."), Err(NameError::Dots));
        assert_eq!(LockName::new("../x"), Err(NameError::BadChar('/')));
        assert_eq!(LockName::new("/etc"), Err(NameError::BadChar('/')));
        assert_eq!(LockName::new("a\\b"), Err(NameError::BadChar('\\')));
        assert_eq!(LockName::new("a\0b"), Err(NameError::BadChar('\0')));
        assert_eq!(LockName::new("a\nb"), Err(NameError::BadChar('\n')));
        // Names that would look like another name in `status`.
        for c in [
            '\u{200B}', '\u{200D}', '\u{202E}', '\u{2066}', '\u{FEFF}', '\u{00AD}',
        ] {
            assert_eq!(
                LockName::new(&format!("job{c}1")),
                Err(NameError::BadChar(c))
            );
        }
        assert_eq!(
            LockName::new(&"n".repeat(MAX_NAME_BYTES + 1)),
            Err(NameError::TooLong(MAX_NAME_BYTES + 1))
        );
    }

    #[test]
    fn maps_to_and_from_lockdirs() {
        let name = LockName::new("bed").unwrap();
        assert_eq!(name.lockdir(), "bed.lockdir");
        assert_eq!(LockName::from_lockdir("bed.lockdir"), Some(name));
        assert_eq!(LockName::from_lockdir("bed"), None);
        assert_eq!(LockName::from_lockdir(".lockdir"), None);
    }
}
