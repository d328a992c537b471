//! Scheduling points: the operations an actor can be stopped before, and what they returned.

use std::fmt;

use lockbydir_protocol::FsError;

/// One call from the protocol into its surroundings. The actor blocks before each of these
/// until the scheduler picks it, and the call then runs as one atomic step.
///
/// `Env::random_u64` is not a scheduling point: it touches no shared state and no clock, so
/// no interleaving can change what it returns or what anybody else sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `Fs::create_dir`.
    CreateDir(String),
    /// `Fs::remove_dir`.
    RemoveDir(String),
    /// `Fs::rename`.
    Rename(String, String),
    /// `Fs::read_dir`.
    ReadDir(String),
    /// `Fs::modified_ms` (only on a filesystem with timestamps).
    Modified(String),
    /// `Env::now_ms`: the actor's own wall clock.
    NowMs,
    /// `Env::monotonic_ms`.
    MonotonicMs,
    /// `Env::sleep_ms`: the actor may run again once virtual time reaches `until`.
    Sleep {
        /// How long the actor asked to sleep.
        ms: u64,
        /// The virtual time at which it may wake.
        until: i64,
    },
    /// `Env::sleep_until_changed` (in scenarios with wake-ups): like `Sleep`, but the actor
    /// may also wake once `path` is renamed away or removed (unless the scheduler loses that
    /// wake-up), or at any moment for nothing (a spurious wake-up). It wakes at once if
    /// `path` is gone when it starts (the watch is set before the look).
    SleepUntilChanged {
        /// The watched entry, relative to the lock directory.
        path: String,
        /// How long the actor asked to sleep at most.
        ms: u64,
        /// The virtual time at which it wakes without any change.
        until: i64,
    },
}

impl Op {
    /// Whether this touches nothing another actor can see or touch: the actor's own staging
    /// or probe directory, whose name holds its random token. Such a step commutes with every
    /// other (creating or removing it changes the root's mtime, which nobody reads).
    pub fn is_private(&self) -> bool {
        let private = |p: &String| {
            p.ends_with(".staging") || p.contains(".staging/") || p.ends_with(".probe")
        };
        match self {
            Op::CreateDir(p) | Op::RemoveDir(p) | Op::Modified(p) => private(p),
            Op::Rename(a, b) => private(a) && private(b),
            _ => false,
        }
    }

    /// Whether this reads a clock.
    pub fn reads_clock(&self) -> bool {
        matches!(self, Op::NowMs | Op::MonotonicMs)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateDir(p) => write!(f, "create_dir {p}"),
            Op::RemoveDir(p) => write!(f, "remove_dir {p}"),
            Op::Rename(a, b) => write!(f, "rename {a} -> {b}"),
            Op::ReadDir(p) => write!(f, "read_dir {p}"),
            Op::Modified(p) => write!(f, "modified_ms {p}"),
            Op::NowMs => write!(f, "now_ms"),
            Op::MonotonicMs => write!(f, "monotonic_ms"),
            Op::Sleep { ms, .. } => write!(f, "sleep_ms {ms}"),
            Op::SleepUntilChanged { path, ms, .. } => {
                write!(f, "sleep_until_changed {path} (at most {ms} ms)")
            }
        }
    }
}

/// What a scheduling point returned to the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// From `create_dir`, `remove_dir`, `rename`.
    Unit(Result<(), FsError>),
    /// From `read_dir`.
    Names(Result<Vec<String>, FsError>),
    /// From `now_ms` and `monotonic_ms`.
    Time(u64),
    /// From `modified_ms`.
    Stamp(Result<u64, FsError>),
    /// From `sleep_ms`.
    Woke,
}

impl fmt::Display for OpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn err(f: &mut fmt::Formatter<'_>, e: &FsError) -> fmt::Result {
            write!(f, "Err({:?})", e.kind)
        }
        match self {
            OpResult::Unit(Ok(())) => write!(f, "ok"),
            OpResult::Unit(Err(e)) | OpResult::Names(Err(e)) | OpResult::Stamp(Err(e)) => err(f, e),
            OpResult::Stamp(Ok(t)) => write!(f, "{t}"),
            OpResult::Names(Ok(names)) => write!(f, "[{}]", names.join(", ")),
            OpResult::Time(t) => write!(f, "{t}"),
            OpResult::Woke => write!(f, "woke"),
        }
    }
}
