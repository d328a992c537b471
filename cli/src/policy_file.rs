//! Plugin policy files: the lock policy and the limits of `lockbydir run` in TOML, so that an
//! operator keeps one file per plugin instead of long command lines.
//!
//! The keys are the flags' names without `--`, and their values are written as the flags'
//! are: durations as strings like `"10m"` (or a number of seconds), sizes as strings like
//! `"64M"` (or a number of bytes), counts as integers, patterns as an array of strings.
//!
//! ```toml
//! allow-lock = ["job-*", "shared.db"]
//! max-timeout = "1m"
//! max-locks = 2
//! max-handles = 64
//! max-new-locks = 16
//! deadline = "10m"
//! max-memory = "256M"
//! ```
//!
//! What the plugin sees (`--dir`, `--env`, `--stdin`), `--trust-plugin-with-locks` and how it
//! is run (`--instances`, `--name`, `--quiet`) are not policy keys: they are refused as
//! unknown.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Spanned, Value};

use lockbydir::limits::MAX_HANDLES_HONOURED;
use lockbydir::policy::NamePattern;

/// What a policy file sets; a key it leaves out is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// `allow-lock`: lock names the plugin may use (never empty).
    pub allow_lock: Option<Vec<NamePattern>>,
    /// `max-timeout`: the longest lock timeout it may request, in ms.
    pub max_timeout_ms: Option<u64>,
    /// `max-locks`: how many locks it may hold at once.
    pub max_locks: Option<usize>,
    /// `max-handles`: how many lock handles it may have open at once (at most
    /// [`MAX_HANDLES_HONOURED`]).
    pub max_handles: Option<usize>,
    /// `max-new-locks`: how many lockdirs it may create.
    pub max_new_locks: Option<usize>,
    /// `deadline`: how long it may run, in ms.
    pub deadline_ms: Option<u64>,
    /// `max-memory`: the most linear memory it and its lock component may use, in bytes.
    pub max_memory: Option<usize>,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// It could not be read (missing, a directory, not readable).
    #[error("policy file {} cannot be read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// It is not TOML, has a key that is not a policy key, or a value that does not parse.
    #[error("policy file {}{}: {message}", path.display(), at_line(*line))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line (from 1) of the offending key or value (of an array's start), where known.
        line: Option<usize>,
        /// What is wrong, naming the key.
        message: String,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map_or_else(String::new, |n| format!(", line {n}"))
}

/// The file as written: every value with where it is, checked by [`PolicyFile::parse`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    allow_lock: Option<Spanned<Value>>,
    max_timeout: Option<Spanned<Value>>,
    max_locks: Option<Spanned<Value>>,
    max_handles: Option<Spanned<Value>>,
    max_new_locks: Option<Spanned<Value>>,
    deadline: Option<Spanned<Value>>,
    max_memory: Option<Spanned<Value>>,
}

impl PolicyFile {
    /// Read and check the policy file at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Check the policy in `text`, read from `path` (which messages name).
    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyFileError> {
        let invalid = |span: Option<Range<usize>>, message: String| PolicyFileError::Invalid {
            path: path.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            // toml's messages can run over lines; a message is one line.
            message: message.trim().replace('\n', "; "),
        };
        let raw: Raw =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;
        // Each value converted by `parse`, or refused naming its key and line.
        fn field<T>(
            value: Option<Spanned<Value>>,
            key: &str,
            parse: impl Fn(Value) -> Result<T, String>,
            invalid: &impl Fn(Option<Range<usize>>, String) -> PolicyFileError,
        ) -> Result<Option<T>, PolicyFileError> {
            value
                .map(|v| {
                    let span = v.span();
                    parse(v.into_inner())
                        .map_err(|why| invalid(Some(span), format!("{key}: {why}")))
                })
                .transpose()
        }
        Ok(PolicyFile {
            allow_lock: field(raw.allow_lock, "allow-lock", patterns, &invalid)?,
            max_timeout_ms: field(raw.max_timeout, "max-timeout", duration, &invalid)?,
            max_locks: field(raw.max_locks, "max-locks", count, &invalid)?,
            max_handles: field(raw.max_handles, "max-handles", handles, &invalid)?,
            max_new_locks: field(raw.max_new_locks, "max-new-locks", count, &invalid)?,
            deadline_ms: field(raw.deadline, "deadline", duration, &invalid)?,
            max_memory: field(raw.max_memory, "max-memory", size, &invalid)?,
        })
    }
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn count(value: Value) -> Result<usize, String> {
    match value {
        Value::Integer(n) => {
            usize::try_from(n).map_err(|_| format!("{n} is not a count (a whole number from 0)"))
        }
        other => Err(format!(
            "expected a whole number like 16, found a {}",
            other.type_str()
        )),
    }
}

fn handles(value: Value) -> Result<usize, String> {
    match count(value)? {
        n if n > MAX_HANDLES_HONOURED => Err(format!(
            "{n} is more than can be honoured (at most {MAX_HANDLES_HONOURED})"
        )),
        n => Ok(n),
    }
}

fn duration(value: Value) -> Result<u64, String> {
    let text = match value {
        Value::String(s) => s,
        // A bare number is seconds, as on the command line.
        Value::Integer(n) => n.to_string(),
        Value::Float(x) => x.to_string(),
        other => {
            return Err(format!(
                "expected a duration like \"10m\" or \"500ms\", found a {}",
                other.type_str()
            ));
        }
    };
    crate::duration::parse_ms(&text).map_err(|e| e.to_string())
}

fn size(value: Value) -> Result<usize, String> {
    let text = match value {
        Value::String(s) => s,
        Value::Integer(n) => n.to_string(),
        other => {
            return Err(format!(
                "expected a size like \"64M\" or a number of bytes, found a {}",
                other.type_str()
            ));
        }
    };
    crate::size::parse_bytes(&text).map_err(|e| e.to_string())
}

fn patterns(value: Value) -> Result<Vec<NamePattern>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "expected an array of patterns like [\"job-*\"], found a {}",
            value.type_str()
        ));
    };
    if items.is_empty() {
        // An empty list would allow every name, the opposite of what it reads as.
        return Err(
            "an empty list would allow every lock name; list the patterns the plugin \
                    may use, or leave the key out to allow any name"
                .into(),
        );
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => NamePattern::parse(&s).map_err(|e| e.to_string()),
            other => Err(format!(
                "expected a pattern (a string), found a {}",
                other.type_str()
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyFile, String> {
        PolicyFile::parse(text, Path::new("p.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn every_key_is_read_as_its_flag_would_be() {
        let policy = parse(
            "allow-lock = [\"job-*\", \"db\"]\nmax-timeout = \"1m\"\nmax-locks = 2\n\
             max-handles = 64\nmax-new-locks = 16\ndeadline = 90\nmax-memory = \"256M\"\n",
        )
        .unwrap();
        assert_eq!(
            policy,
            PolicyFile {
                allow_lock: Some(vec![
                    NamePattern::parse("job-*").unwrap(),
                    NamePattern::parse("db").unwrap()
                ]),
                max_timeout_ms: Some(60_000),
                max_locks: Some(2),
                max_handles: Some(64),
                max_new_locks: Some(16),
                deadline_ms: Some(90_000),
                max_memory: Some(256 << 20),
            }
        );
        assert_eq!(parse("# nothing\n").unwrap(), PolicyFile::default());
    }

    /// The example docs/untrusted-plugins.md shows (`examples/policy/worker.toml`; the docs
    /// test keeps the two equal), and the one in this module's doc, are valid policies.
    #[test]
    fn the_documented_examples_are_valid() {
        let example = include_str!("../../examples/policy/worker.toml");
        let policy = parse(example).unwrap();
        assert_eq!(policy.max_memory, Some(256 << 20));
        assert_eq!(policy.allow_lock.as_ref().map(Vec::len), Some(2));
        let doc = include_str!("policy_file.rs");
        let start = doc.find("//! ```toml\n").unwrap() + 12;
        let example: String = doc[start..][..doc[start..].find("//! ```").unwrap()]
            .lines()
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim()))
            .collect();
        assert_eq!(parse(&example).unwrap(), policy);
    }

    #[test]
    fn refusals_name_the_file_the_line_and_the_key() {
        for (text, expected) in [
            (
                "max-locks = 1\nstdin = true\n",
                "p.toml, line 2: unknown field `stdin`",
            ),
            (
                "\n\nmax-memory = \"12X\"\n",
                "p.toml, line 3: max-memory: invalid size \"12X\"",
            ),
            (
                "deadline = \"soon\"",
                "p.toml, line 1: deadline: invalid duration \"soon\"",
            ),
            (
                "max-locks = \"2\"",
                "line 1: max-locks: expected a whole number like 16, found a string",
            ),
            ("max-locks = -1", "line 1: max-locks: -1 is not a count"),
            (
                "allow-lock = \"job-*\"",
                "line 1: allow-lock: expected an array of patterns",
            ),
            (
                "allow-lock = []",
                "line 1: allow-lock: an empty list would allow every lock name",
            ),
            (
                "allow-lock = [\n  \"ok\",\n  \"a/b\",\n]",
                // The line of the key: the pattern quoted says which one.
                "line 1: allow-lock: invalid lock name pattern \"a/b\"",
            ),
            (
                "max-handles = 2000000",
                "line 1: max-handles: 2000000 is more than can be honoured",
            ),
            ("max-locks = 1\nmax-locks = 2\n", "p.toml, line 2: "),
            ("max-locks = ", "p.toml, line 1: "),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.starts_with("policy file p.toml") && err.contains(expected),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }
}
