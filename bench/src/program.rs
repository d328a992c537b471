//! What `bench` needs from the program that runs it: its global options (passed on to the
//! child processes it starts from the same executable) and its runtime. Backends come from
//! the host library's factory (`lockbydir::Place`).

use std::path::{Path, PathBuf};

use lockbydir::Runtime;

/// The running program, as `bench` uses it. The `lockbydir` command implements it with its
/// global options and `--backend` code, so the bench measures exactly what users run.
pub trait Program: Sync {
    /// The lock component used instead of the built-in one (`--lock-component`), if any.
    fn lock_component(&self) -> Option<&Path>;
    /// Whether compiled components are not cached on disk (`--no-cache`).
    fn no_cache(&self) -> bool;
    /// The runtime these options describe.
    fn runtime(&self) -> anyhow::Result<Runtime>;
    /// `dir` made absolute, after checking that it is an existing directory (`role` names it
    /// in the error).
    fn absolute_dir(&self, dir: &Path, role: &str) -> anyhow::Result<PathBuf>;
}
