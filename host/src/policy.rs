//! What a plugin may do with locks: which names, how long a timeout, how many at once.
//! Checked by the host before a request reaches the backend; a refusal is the WIT error
//! `denied`, and is reported ([`crate::report::Event::Denied`]) with the plugin's name.

use std::fmt;

/// A lock name pattern: a lock name in which `*` matches any run of characters
/// (`build-*`, `*.db`, `exact`).
///
/// # Examples
///
/// ```
/// use lockbydir::NamePattern;
///
/// let jobs = NamePattern::parse("job-*").unwrap();
/// assert!(jobs.matches("job-7") && !jobs.matches("backup"));
/// // A pattern follows the rules of lock names: no `/`, no control or invisible characters.
/// assert!(NamePattern::parse("a/*").is_err());
/// assert!(NamePattern::parse("x\u{200b}*").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(String);

/// Why a pattern or a limit on the command line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid lock name pattern {pattern:?}: {why}")]
pub struct PatternError {
    pattern: String,
    why: String,
}

impl NamePattern {
    /// Parse a pattern: it follows the rules of lock names, with `*` allowed anywhere.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let fail = |why: String| PatternError {
            pattern: pattern.to_owned(),
            why,
        };
        // Check it as a name with every `*` replaced by an ordinary character.
        let as_name = pattern.replace('*', "x");
        lockbydir_name_rules(&as_name).map_err(fail)?;
        Ok(NamePattern(pattern.to_owned()))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The protocol's lock-name rules ([`lockbydir_protocol::LockName`]), for a pattern.
fn lockbydir_name_rules(name: &str) -> Result<(), String> {
    lockbydir_protocol::LockName::new(name)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `*`-only wildcard matching, iterative with backtracking to the last star.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The lock policy of one plugin: checked by the lock import before a request reaches the
/// backend (a refusal is the interface's `denied`).
///
/// # Examples
///
/// ```
/// use lockbydir::{LockPolicy, NamePattern};
///
/// let policy = LockPolicy {
///     allowed: vec![NamePattern::parse("job-*").unwrap()],
///     max_held: Some(1),
///     ..LockPolicy::default()
/// };
/// assert!(policy.check_open("job-1", 30_000, 0).is_ok());
/// assert!(policy.check_open("other", 30_000, 0).unwrap_err().contains("not allowed"));
/// assert!(policy.check_acquire(1).unwrap_err().contains("the cap is 1"));
/// ```
#[derive(Clone, Debug)]
pub struct LockPolicy {
    /// Lock names it may use; empty means any.
    pub allowed: Vec<NamePattern>,
    /// The longest lease it may ask for, in ms.
    pub max_timeout_ms: Option<u64>,
    /// How many locks it may hold at once.
    pub max_held: Option<usize>,
    /// How many lock handles it may have open at once.
    pub max_handles: usize,
    /// How many lockdirs it may create (locks that did not exist before it first acquired
    /// them); `None`: no cap. Lockdirs are permanent, so without a cap a plugin can fill the
    /// lock directory. The default context caps it at [`DEFAULT_MAX_NEW_LOCKS`].
    pub max_new_locks: Option<usize>,
}

/// How many lock handles a plugin may have open at once unless told otherwise.
pub const DEFAULT_MAX_HANDLES: usize = 1024;

/// The cap `lockbydir run` puts on the lockdirs one plugin instance may create.
pub const DEFAULT_MAX_NEW_LOCKS: usize = 64;

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            allowed: Vec::new(),
            max_timeout_ms: None,
            max_held: None,
            max_handles: DEFAULT_MAX_HANDLES,
            max_new_locks: None,
        }
    }
}

impl LockPolicy {
    /// Whether the plugin may use (and so learn anything about) lock `name`.
    pub fn allows_name(&self, name: &str) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|p| p.matches(name))
    }

    /// May lock `name` be used (or looked at)? If not, the refusal, naming what is allowed.
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        if self.allows_name(name) {
            return Ok(());
        }
        let allowed: Vec<String> = self.allowed.iter().map(|p| p.to_string()).collect();
        Err(format!(
            "lock name `{name}` is not allowed (allowed: {})",
            allowed.join(", ")
        ))
    }

    /// Whether some lock names are out of bounds (names are allowed by pattern).
    pub fn limits_names(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// May a handle on `name` with `timeout_ms` be opened, with `open` handles already open?
    pub fn check_open(&self, name: &str, timeout_ms: u64, open: usize) -> Result<(), String> {
        self.check_name(name)?;
        if let Some(max) = self.max_timeout_ms.filter(|&max| timeout_ms > max) {
            return Err(format!(
                "timeout {timeout_ms} ms is above the cap of {max} ms"
            ));
        }
        if open >= self.max_handles {
            return Err(format!(
                "{open} lock handles are open; the cap is {}",
                self.max_handles
            ));
        }
        Ok(())
    }

    /// May the plugin create lock `name`'s lockdir, having created `created` already?
    pub fn check_create(&self, name: &str, created: usize) -> Result<(), String> {
        match self.max_new_locks {
            Some(max) if created >= max => Err(format!(
                "lock `{name}` does not exist yet and this plugin already created {created} \
                 new lock(s); the cap is {max} new locks"
            )),
            _ => Ok(()),
        }
    }

    /// May one more lock be acquired, with `held` locks already held?
    pub fn check_acquire(&self, held: usize) -> Result<(), String> {
        match self.max_held {
            Some(max) if held >= max => Err(format!(
                "{held} lock(s) are already held; the cap is {max} at once"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars() {
        let p = |s| NamePattern::parse(s).unwrap();
        assert!(p("build-*").matches("build-1"));
        assert!(p("build-*").matches("build-"));
        assert!(!p("build-*").matches("test-1"));
        assert!(p("*.db").matches("users.db"));
        assert!(p("a*b*c").matches("aXXbYYc"));
        assert!(!p("a*b*c").matches("aXXbYY"));
        assert!(p("exact").matches("exact"));
        assert!(!p("exact").matches("exactly"));
        assert!(p("*").matches("anything"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in ["", "..", "a/*", "*\0"] {
            let err = NamePattern::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid lock name pattern"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_policy_refuses_with_reasons() {
        let policy = LockPolicy {
            allowed: vec![NamePattern::parse("job-*").unwrap()],
            max_timeout_ms: Some(5_000),
            max_held: Some(1),
            max_handles: 2,
            max_new_locks: Some(1),
        };
        assert!(policy.check_open("job-1", 5_000, 0).is_ok());
        assert!(
            policy
                .check_open("other", 1_000, 0)
                .unwrap_err()
                .contains("not allowed")
        );
        assert!(
            policy
                .check_open("job-1", 6_000, 0)
                .unwrap_err()
                .contains("above the cap")
        );
        assert!(
            policy
                .check_open("job-1", 1_000, 2)
                .unwrap_err()
                .contains("handles")
        );
        assert!(policy.check_create("job-1", 0).is_ok());
        assert!(
            policy
                .check_create("job-2", 1)
                .unwrap_err()
                .contains("the cap is 1 new locks")
        );
        assert!(policy.check_acquire(0).is_ok());
        assert!(
            policy
                .check_acquire(1)
                .unwrap_err()
                .contains("already held")
        );
    }
}
