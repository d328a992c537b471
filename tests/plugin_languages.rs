//! Plugins in three languages on one lock: the Rust counter plugin, the Python plugin
//! (componentize-py) and the JavaScript plugin (componentize-js) of examples/plugins, each run
//! by `lockbydir run`, next to a `lockbydir exec` loop and the Node and Python host wrappers
//! (examples/node, examples/python). Each round increments a shared counter file with a plain
//! read-modify-write and logs its hold interval and fence; the count must be exact, no two
//! holds may overlap, and fences rise in time order.
//!
//! The tools are installed by the test itself (tests/common/languages.rs, at the versions
//! examples/plugins pins); where they cannot be, the test prints `skipped: <why>` and passes.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::wrappers::{Contender, Gate, hosts, missing_tools};
use common::{EXEC_INCREMENT, Scratch, assert_exclusive, count, guest, intervals, languages};

/// Rounds per contender.
const ROUNDS: usize = 20;

/// The lock everyone takes.
const LOCK: &str = "shared";

/// Only a hang guard, far above the test's real run time (which includes compiling the
/// Python and JavaScript components, about 15 MB each, on a first run).
const HANG_GUARD: Duration = Duration::from_secs(900);

/// A line on the real stderr, past libtest's capture, so CI logs show it.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "plugin_languages: {line}");
}

/// Rust, Python and JavaScript plugins (`lockbydir run`), an `exec` loop, and the Node and
/// Python wrappers on one lock: exact count, no overlapping holds, rising fences.
#[test]
fn rust_python_and_js_plugins_take_turns_with_exec_and_the_wrappers() {
    let tools = missing_tools()
        .map_or(Ok(()), Err)
        .and_then(|()| Ok((languages::python_plugin()?, languages::js_plugin()?)));
    let (python_plugin, js_plugin) = match tools {
        Ok(plugins) => plugins,
        Err(why) => {
            say(&format!("skipped: {why}"));
            return;
        }
    };
    let wrappers = hosts();
    let scratch = Scratch::new("plugin-languages");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let counter = work.join("counter");
    let log = work.join("log");
    std::fs::write(&counter, "0").unwrap();

    // Hold the lock while every contender starts (the Python and JavaScript components take
    // long to compile the first time), so that all of them wait on it when the hammering
    // begins.
    let mut gate = Gate::close(&locks, LOCK, scratch.join("go"));
    let started = Instant::now();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut contenders = Vec::new();
    for (label, plugin) in [
        ("rust-plugin", guest("counter.wasm")),
        ("python-plugin", python_plugin),
        ("js-plugin", js_plugin),
    ] {
        let cmd = run_plugin(&locks, &work, &plugin, label);
        contenders.push(Contender::spawn(label.to_owned(), cmd, &ready_tx));
    }
    let script = format!(
        r#"q=; for i in $(seq {ROUNDS}); do "$0" --locks "$1" exec $q {LOCK} -- sh -c '{EXEC_INCREMENT}' sh "$2" "$3" || exit 1; q=--quiet; done"#
    );
    let mut exec = Command::new("sh");
    exec.env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
        .env_remove("LOCKBYDIR_DIR")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_lockbydir"))
        .arg(&locks)
        .arg(&work)
        .arg("exec");
    contenders.push(Contender::spawn("exec".to_owned(), exec, &ready_tx));
    let mut node = Command::new("node");
    node.current_dir(&wrappers.node_dir)
        .arg("counter.mjs")
        .args(wrapper_args(&locks, &counter, &log, "node-wrapper"));
    contenders.push(Contender::spawn("node-wrapper".to_owned(), node, &ready_tx));
    let mut python = Command::new(&wrappers.python);
    python
        .current_dir(common::wrappers::examples().join("python"))
        .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
        .arg("counter.py")
        .args(wrapper_args(&locks, &counter, &log, "python-wrapper"));
    contenders.push(Contender::spawn(
        "python-wrapper".to_owned(),
        python,
        &ready_tx,
    ));
    drop(ready_tx);

    let mut waiting = 0;
    while waiting < contenders.len() && started.elapsed() < HANG_GUARD {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => waiting += 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if contenders.iter_mut().any(|c| c.exited()) {
                    break;
                }
            }
        }
    }
    let gate_opened = Instant::now();
    gate.open();

    let mut failed = Vec::new();
    let kinds = contenders.len();
    for contender in contenders {
        let label = contender.label.clone();
        match contender.finish(started + HANG_GUARD) {
            (Some(s), _) if s.success() => {}
            (Some(s), text) => failed.push(format!("{label} failed ({s}):\n{text}")),
            (None, text) => failed.push(format!("{label} hung and was killed:\n{text}")),
        }
    }
    assert!(
        failed.is_empty(),
        "contenders failed:\n{}",
        failed.join("\n")
    );

    let total = kinds * ROUNDS;
    assert_eq!(count(&counter), total, "the shared counter");
    assert_exclusive(&log, total);
    let holds = intervals::parse(&std::fs::read_to_string(&log).unwrap(), "").unwrap();
    for label in [
        "rust-plugin",
        "python-plugin",
        "js-plugin",
        "exec",
        "node-wrapper",
        "python-wrapper",
    ] {
        let mine = holds.iter().filter(|h| h.who == label).count();
        assert_eq!(mine, ROUNDS, "holds logged by {label}");
    }
    let mut by_start = holds.clone();
    by_start.sort_by_key(|h| h.start);
    let switches = by_start.windows(2).filter(|w| w[0].who != w[1].who).count();
    say(&format!(
        "{kinds} contenders x {ROUNDS} rounds: {total} holds, none overlapping, the holder \
         changed {switches} times; {waiting} were waiting at the gate after {:.1}s; hammering \
         took {:.1}s",
        gate_opened.duration_since(started).as_secs_f64(),
        gate_opened.elapsed().as_secs_f64()
    ));
}

/// `lockbydir run --dir WORK::/work PLUGIN -- <counter arguments>`.
fn run_plugin(locks: &Path, work: &Path, plugin: &PathBuf, label: &str) -> Command {
    let mut cmd = common::lockbydir(locks);
    cmd.args(["run", "--dir"])
        .arg(format!("{}::/work", work.display()))
        .arg(plugin)
        .args(["--", "--lock", LOCK])
        .args(["--counter", "/work/counter", "--log", "/work/log"])
        .args(["--rounds", &ROUNDS.to_string(), "--label", label]);
    cmd
}

/// The Node and Python wrappers' counter arguments.
fn wrapper_args(locks: &Path, counter: &Path, log: &Path, label: &str) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    [
        "--locks",
        &path(locks),
        "--lock",
        LOCK,
        "--counter",
        &path(counter),
        "--log",
        &path(log),
        "--rounds",
        &ROUNDS.to_string(),
        "--label",
        label,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Every code block of docs/plugins-in-python-and-js.md marked `file=PATH` is the file
/// examples/plugins/PATH that the test above builds, byte for byte.
#[test]
fn the_docs_show_the_files_the_test_builds() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/plugins-in-python-and-js.md");
    let blocks = languages::marked_blocks(&std::fs::read_to_string(doc).unwrap());
    let shown: Vec<&str> = blocks.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        shown,
        [
            "python/wit/world.wit",
            "python/wit/deps/wasi-cli/run.wit",
            "python/app.py",
            "js/package.json",
            "js/wit/world.wit",
            "js/app.js",
        ],
        "the files the doc shows"
    );
    for (file, text) in blocks {
        let real = std::fs::read_to_string(languages::plugins_dir().join(&file)).unwrap();
        assert_eq!(text, real, "docs/plugins-in-python-and-js.md's {file}");
    }
}
