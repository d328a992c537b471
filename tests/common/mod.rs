//! Helpers shared by the integration tests: scratch directories, the `lockbydir` binary, the
//! example plugins, and reading hold logs.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

pub use lockbydir::intervals;

/// A fresh directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory named after `tag`.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// A subdirectory, created.
    pub fn dir(&self, p: &str) -> PathBuf {
        let d = self.0.join(p);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Every path below, relative, sorted (to prove nothing else was created).
    pub fn tree(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().display().to_string());
                if p.is_dir() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the compiled-code cache of the tests lives (shared by all test processes).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lockbydir-cache")
}

/// A component built by build.rs (`counter.wasm`, `sleeper.wasm`, `lockbydir_guest.wasm`).
pub fn guest(file: &str) -> PathBuf {
    PathBuf::from(env!("LOCKBYDIR_GUESTS_DIR")).join(file)
}

/// `lockbydir` with the tests' cache and a lock directory.
pub fn lockbydir(locks: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockbydir"));
    cmd.env("LOCKBYDIR_CACHE_DIR", cache_dir())
        .env_remove("LOCKBYDIR_DIR")
        .arg("--locks")
        .arg(locks);
    cmd
}

/// Run and capture; panics with the output if it could not start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Check a hold log: exactly `expected` holds, none overlapping, fences rising.
pub fn assert_exclusive(log: &Path, expected: usize) {
    let text = std::fs::read_to_string(log).unwrap();
    let holds = intervals::parse(&text, "").unwrap();
    let report = intervals::check(holds).unwrap_or_else(|o| panic!("two holders at once: {o}"));
    assert_eq!(report.holds, expected, "hold records in {}", log.display());
    assert!(report.fences_increase, "fences did not rise in time order");
}

/// Parse a counter file.
pub fn count(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
