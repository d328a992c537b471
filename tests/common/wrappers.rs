//! The Node and Python host wrappers (examples/node, examples/python) set up for a test, and
//! contender processes that take turns on one lock behind a gate: shared by the tests that
//! drive the wrappers (tests/other_languages.rs) and the mixed plugin test
//! (tests/plugin_languages.rs).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Scratch, lockbydir, output, stderr};

/// Only a hang guard for the gate, far above a real run's time.
const SETUP_GUARD: Duration = Duration::from_secs(600);

/// A line on the real stderr, past libtest's capture, so CI logs show it (the setup steps).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "wrappers: {line}");
}

/// The Node and Python examples, set up once per test process.
pub struct Hosts {
    /// `examples/node`, installed and transpiled.
    pub node_dir: PathBuf,
    /// The virtualenv's python, with wasmtime installed.
    pub python: PathBuf,
}

/// Set up the Node and Python examples (once; the tests of this file share them).
pub fn hosts() -> Hosts {
    static SET_UP: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    let (node_dir, python) = SET_UP.get_or_init(|| {
        let scratch = Scratch::new("other-languages-setup");
        let setup_started = Instant::now();
        let node_dir = prepare_node(&scratch.0);
        let python = prepare_python(&scratch.0);
        say(&format!(
            "set up the Node and Python examples in {:.1}s",
            setup_started.elapsed().as_secs_f64()
        ));
        (node_dir, python)
    });
    Hosts {
        node_dir: node_dir.clone(),
        python: python.clone(),
    }
}

/// A holder that keeps the lock until it is opened, so that every contender starts waiting
/// before the hammering begins. Dropping it opens it too (on a failing path).
pub struct Gate {
    /// The lock it holds.
    lock: String,
    /// The file whose creation ends the holder's command.
    go: PathBuf,
    /// `lockbydir exec --holder gate ...`.
    holder: Child,
}

impl Gate {
    /// Take `lock` as `gate` (with `lockbydir exec`) and wait until it is held.
    pub fn close(locks: &Path, lock: &str, go: PathBuf) -> Self {
        let holder = lockbydir(locks)
            .args([
                "exec", "--quiet", "--holder", "gate", lock, "--", "sh", "-c",
            ])
            .arg(r#"while [ ! -e "$0" ]; do sleep 0.01; done"#)
            .arg(&go)
            .spawn()
            .unwrap();
        let mut gate = Gate {
            lock: lock.to_owned(),
            go,
            holder,
        };
        gate.wait_until_held(locks);
        gate
    }

    /// Poll `status` until the gate holds the lock.
    fn wait_until_held(&mut self, locks: &Path) {
        let started = Instant::now();
        loop {
            let o = output(lockbydir(locks).args(["status", "--json"]));
            assert!(o.status.success(), "status failed: {}", stderr(&o));
            let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let held =
                report["locks"].as_array().unwrap().iter().any(|r| {
                    r["name"] == *self.lock && r["state"] == "held" && r["holder"] == "gate"
                });
            if held {
                return;
            }
            assert!(
                self.holder.try_wait().unwrap().is_none(),
                "the gate holder exited before taking the lock"
            );
            assert!(
                started.elapsed() < SETUP_GUARD,
                "the gate never took the lock"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Let the holder's command end, so that it releases the lock; check that it succeeded.
    pub fn open(&mut self) {
        std::fs::write(&self.go, "").unwrap();
        let status = self.holder.wait().unwrap();
        assert!(status.success(), "the gate holder failed: {status}");
    }
}

impl Drop for Gate {
    /// On a failing path, let the holder end rather than leave it running.
    fn drop(&mut self) {
        if let Ok(None) = self.holder.try_wait() {
            let _ = std::fs::write(&self.go, "");
            let _ = self.holder.wait();
        }
    }
}

/// One contender process; a thread forwards its stderr and reports its first "blocking
/// waiting" line.
pub struct Contender {
    /// Its label in the hold log (`rust-run-0`, `node-1`, ...).
    pub label: String,
    /// The process.
    child: Child,
    /// The thread reading its stderr; yields all of it.
    stderr: Option<JoinHandle<String>>,
}

impl Contender {
    /// Start `cmd` (stdout discarded, stderr read by a thread that sends `label` on `ready` at
    /// the first "blocking waiting for lock" line).
    pub fn spawn(label: String, mut cmd: Command, ready: &mpsc::Sender<String>) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {label} ({cmd:?}): {e}"));
        let pipe = child.stderr.take().unwrap();
        let ready = ready.clone();
        let name = label.clone();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let mut said_ready = false;
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let waiting = line.contains("blocking waiting for lock");
                if !waiting || !said_ready {
                    eprintln!("[{name}] {line}");
                }
                if waiting && !said_ready {
                    said_ready = true;
                    let _ = ready.send(name.clone());
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        Contender {
            label,
            child,
            stderr: Some(stderr),
        }
    }

    /// Whether the process has already exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Wait for the process (killing it past `deadline`); its status (None if killed) and
    /// everything it wrote on stderr.
    pub fn finish(mut self, deadline: Instant) -> (Option<std::process::ExitStatus>, String) {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = self.stderr.take().unwrap().join().unwrap();
        (status, text)
    }
}

impl Drop for Contender {
    /// A contender left running by a failing test is killed.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `examples/` folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .expect("examples/ next to host/")
}

/// Why this machine cannot run the test, if it cannot.
pub fn missing_tools() -> Option<String> {
    for (tool, args) in [
        ("node", &["--version"][..]),
        ("npm", &["--version"][..]),
        ("python3", &["--version"][..]),
    ] {
        if !succeeds(Command::new(tool).args(args)) {
            return Some(format!(
                "`{tool}` is not installed (needed to run the Node and Python examples)"
            ));
        }
    }
    if !succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"])) {
        return Some(
            "python3 cannot make virtualenvs (no `venv`/`ensurepip`; on Debian: python3-venv)"
                .to_owned(),
        );
    }
    None
}

/// Whether a command starts and exits 0 (its output discarded).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run a setup step, failing the test with its output if it fails.
pub fn setup(cmd: &mut Command) {
    say(&format!("setup: {cmd:?}"));
    let o = output(cmd);
    assert!(
        o.status.success(),
        "setup step {cmd:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// Whether `stamp` holds exactly the bytes of `source` (both must exist).
pub fn stamped(source: &Path, stamp: &Path) -> bool {
    match (std::fs::read(source), std::fs::read(stamp)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `lockbydir component --out FILE`, as the examples' README says.
pub fn write_component(locks: &Path, to: &Path) {
    setup(lockbydir(locks).args(["component", "--out"]).arg(to));
}

/// `npm ci` and `npm run transpile` in examples/node, each only if its inputs changed.
pub fn prepare_node(locks: &Path) -> PathBuf {
    let dir = examples().join("node");
    let installed_stamp = dir.join("node_modules/.lockbydir-package-lock.json");
    let mut installed = false;
    if !stamped(&dir.join("package-lock.json"), &installed_stamp) {
        setup(Command::new("npm").arg("ci").current_dir(&dir));
        std::fs::copy(dir.join("package-lock.json"), &installed_stamp).unwrap();
        installed = true;
    }
    write_component(locks, &dir.join("lock.wasm"));
    // Outside gen/, which the npm package ships.
    let transpiled_stamp = dir.join("node_modules/.lockbydir-transpiled.wasm");
    if installed || !stamped(&dir.join("lock.wasm"), &transpiled_stamp) {
        let _ = std::fs::remove_dir_all(dir.join("gen"));
        setup(
            Command::new("npm")
                .args(["run", "transpile"])
                .current_dir(&dir),
        );
        std::fs::copy(dir.join("lock.wasm"), &transpiled_stamp).unwrap();
    }
    dir
}

/// A virtualenv in examples/python with `requirements.txt` installed (only if it changed, or
/// the venv is unusable), the component in the package (`lockbydir/lock.wasm`), and the
/// package installed into the venv with `pip install .` (only if it changed); returns the
/// venv's python.
pub fn prepare_python(locks: &Path) -> PathBuf {
    let dir = examples().join("python");
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".lockbydir-requirements.txt");
    let usable = stamped(&dir.join("requirements.txt"), &stamp)
        && succeeds(Command::new(&python).args(["-c", "import wasmtime"]));
    if !usable {
        setup(
            Command::new("python3")
                .args(["-m", "venv", "--clear", ".venv"])
                .current_dir(&dir),
        );
        setup(
            Command::new(&python)
                .args(["-m", "pip", "install", "--disable-pip-version-check"])
                .args(["--quiet", "-r", "requirements.txt"])
                .current_dir(&dir),
        );
        std::fs::copy(dir.join("requirements.txt"), &stamp).unwrap();
    }
    write_component(locks, &dir.join("lockbydir/lock.wasm"));
    let package_stamp = venv.join(".lockbydir-package");
    let package: Vec<u8> = [
        "pyproject.toml",
        "lockbydir/__init__.py",
        "lockbydir/lock.wasm",
    ]
    .iter()
    .flat_map(|f| std::fs::read(dir.join(f)).unwrap())
    .collect();
    if std::fs::read(&package_stamp).ok().as_deref() != Some(&package[..]) {
        let _ = std::fs::remove_dir_all(dir.join("build"));
        setup(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                ])
                .arg(".")
                .current_dir(&dir),
        );
        std::fs::write(&package_stamp, package).unwrap();
    }
    python
}
