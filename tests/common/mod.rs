//! Helpers shared by the integration tests: scratch directories, the `lockbydir` binary, the
//! example plugins, and reading hold logs.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod plugins;

pub use lockbydir_cli::intervals;

pub mod languages;
pub mod wrappers;

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

/// A plugin the tests build (`counter.wasm`, `hostile.wasm`, `counter-v0-1-0.wasm`; see
/// [`plugins::PACKAGES`]).
pub fn guest(file: &str) -> PathBuf {
    plugins::dir().join(file)
}

/// The lock component the host crate ships and the binary embeds.
pub fn shipped_lock_component() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/component/lockbydir-lock.wasm")
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

/// Start `cmd` with SIGINT, SIGTERM and SIGHUP at their default dispositions, whatever this
/// test run inherited (`nohup` leaves SIGHUP ignored; a non-interactive shell leaves SIGINT
/// ignored in a background job). For tests that send those signals: lockbydir and its
/// wrappers keep a signal that was ignored at start ignored, as `nohup` users expect.
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls: signal(2).
    unsafe {
        cmd.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        });
    }
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

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `status --json`, parsed: its `locks` rows (the format of version 1, checked).
pub fn status(locks: &Path) -> Vec<serde_json::Value> {
    let o = output(lockbydir(locks).args(["status", "--json"]));
    assert!(o.status.success(), "status failed: {}", stderr(&o));
    let report = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();
    assert_eq!(report["version"], 1, "{report}");
    report["locks"].as_array().unwrap().clone()
}

/// The status row of lock `name` once it is held by `holder` (polls `status`; panics if the
/// holder process exits first, or after about ten seconds).
pub fn wait_until_held(
    locks: &Path,
    name: &str,
    holder: &str,
    child: &mut std::process::Child,
) -> serde_json::Value {
    for _ in 0..500 {
        if let Some(row) = status(locks)
            .into_iter()
            .find(|r| r["name"] == name && r["state"] == "held" && r["holder"] == holder)
        {
            return row;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the holder exited before taking the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("lock {name} never became held by {holder}");
}

/// The shell snippet an `exec`'d command runs: a read-modify-write under the lock, logged.
/// `$1` is the work directory, `$2` the label.
pub const EXEC_INCREMENT: &str = r#"s=$(date +%s%N); n=$(cat "$1/counter"); echo $((n+1)) > "$1/counter"; e=$(date +%s%N); echo "$s $e $LOCKBYDIR_FENCE $2" >> "$1/log""#;

/// Four processes on lock `shared` in `locks`: two `lockbydir run` with the counter plugin and
/// two shell loops of `lockbydir exec`, `rounds` increments each. Checks the counter and that
/// no holds overlapped.
pub fn hammer_with_processes(locks: &Path, work: &Path, rounds: usize) {
    std::fs::write(work.join("counter"), "0").unwrap();
    let mut children = Vec::new();
    for i in 0..2 {
        let mut run = lockbydir(locks);
        run.args(["run", "--quiet", "--dir"])
            .arg(format!("{}::/work", work.display()))
            .arg(guest("counter.wasm"))
            .args(["--", "--lock", "shared", "--counter", "/work/counter"])
            .args(["--log", "/work/log", "--rounds", &rounds.to_string()])
            .args(["--label", &format!("run-{i}")]);
        children.push(run.spawn().unwrap());
    }
    for i in 0..2 {
        let exe = env!("CARGO_BIN_EXE_lockbydir");
        let script = format!(
            "for i in $(seq {rounds}); do \"{exe}\" --locks \"$0\" exec --quiet shared -- sh -c '{EXEC_INCREMENT}' sh \"$1\" exec-{i} || exit 1; done"
        );
        let mut sh = Command::new("sh");
        sh.env("LOCKBYDIR_CACHE_DIR", cache_dir())
            .arg("-c")
            .arg(script)
            .arg(locks)
            .arg(work);
        children.push(sh.spawn().unwrap());
    }
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a contender failed");
    }
    assert_eq!(count(&work.join("counter")), 4 * rounds);
    assert_exclusive(&work.join("log"), 4 * rounds);
}
