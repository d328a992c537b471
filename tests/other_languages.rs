//! One lock component, many hosts: the Rust host (`lockbydir run` with the counter plugin and
//! `lockbydir exec` with a shell command), Node.js (the component transpiled by jco, in
//! `examples/node`) and Python (wasmtime's component support, in `examples/python`) all hammer
//! one lock in one lock directory. Each round increments a shared counter file with a plain
//! read-modify-write and logs its hold interval; the count must be exact and no two holds may
//! overlap. The other tests drive the wrappers' holders and waiters as real processes: long
//! bodies (refresh), lost locks, SIGINT/SIGTERM/SIGHUP, the fair queue, README's commands on
//! a fresh machine, errors, Python's compile cache, and the wrappers as installed packages.
//!
//! The tests set up what the examples need, as their README says: `npm ci`, `lockbydir
//! component --out lock.wasm` and `npm run transpile` in `examples/node`; a virtualenv with
//! `pip install -r requirements.txt`, `lockbydir component --out lockbydir/lock.wasm` and
//! `pip install .` in `examples/python`. Each step is skipped when a stamp shows that its
//! inputs have not changed, so a second run is quick. If `node`/`npm` or `python3` (with
//! `venv`) is missing, each test says "skipped: ..." and passes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::wrappers::{Contender, Gate, Hosts, examples, hosts, missing_tools, setup};
use common::{
    Scratch, assert_exclusive, count, default_signals, guest, intervals, lockbydir, output, stderr,
};

/// Rounds per contender.
const ROUNDS: usize = 40;

/// How many contenders of each kind: `lockbydir run`, `lockbydir exec`, Node, Python.
const PER_KIND: usize = 2;

/// The lock everyone takes.
const LOCK: &str = "shared";

/// The shell snippet an `exec`'d command runs (as in tests/cli.rs): a read-modify-write under
/// the lock, logged. `$1` is the work directory, `$2` the label.
const EXEC_INCREMENT: &str = r#"s=$(date +%s%N); n=$(cat "$1/counter"); echo $((n+1)) > "$1/counter"; e=$(date +%s%N); echo "$s $e $LOCKBYDIR_FENCE $2" >> "$1/log""#;

/// Only a hang guard, far above the test's real run time: contenders still running after
/// this are killed and the test fails saying so.
const HANG_GUARD: Duration = Duration::from_secs(600);

/// Two `lockbydir run`, two `lockbydir exec` loops, two Node and two Python processes on one
/// lock: the shared count is exact and no two holds overlap.
#[test]
fn rust_node_and_python_hosts_take_turns_on_one_lock() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let scratch = Scratch::new("other-languages");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let Hosts { node_dir, python } = hosts();

    std::fs::write(work.join("counter"), "0").unwrap();
    let counter = work.join("counter");
    let log = work.join("log");

    // A gate: hold the lock while every contender starts, so that all of them are waiting on
    // it when the hammering begins (Node and Python start slower than `lockbydir run`).
    let mut gate = Gate::close(&locks, LOCK, scratch.join("go"));

    let started = Instant::now();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut contenders = Vec::new();
    for i in 0..PER_KIND {
        let label = format!("rust-run-{i}");
        let mut cmd = lockbydir(&locks);
        cmd.args(["run", "--dir"])
            .arg(format!("{}::/work", work.display()))
            .arg(guest("counter.wasm"))
            .args(["--", "--lock", LOCK])
            .args(["--counter", "/work/counter", "--log", "/work/log"])
            .args(["--rounds", &ROUNDS.to_string(), "--label", &label]);
        contenders.push(Contender::spawn(label, cmd, &ready_tx));
    }
    for i in 0..PER_KIND {
        // A shell loop of `lockbydir exec` processes, one round each; the first one says when
        // it waits, the others are quiet.
        let label = format!("rust-exec-{i}");
        let script = format!(
            r#"q=; for i in $(seq {ROUNDS}); do "$0" --locks "$1" exec $q {LOCK} -- sh -c '{EXEC_INCREMENT}' sh "$2" "$3" || exit 1; q=--quiet; done"#
        );
        let mut cmd = Command::new("sh");
        cmd.env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
            .env_remove("LOCKBYDIR_DIR")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_lockbydir"))
            .arg(&locks)
            .arg(&work)
            .arg(&label);
        contenders.push(Contender::spawn(label, cmd, &ready_tx));
    }
    for i in 0..PER_KIND {
        let label = format!("node-{i}");
        let mut cmd = Command::new("node");
        cmd.current_dir(&node_dir)
            .arg("counter.mjs")
            .args(counter_args(&locks, &counter, &log, &label));
        contenders.push(Contender::spawn(label, cmd, &ready_tx));
    }
    for i in 0..PER_KIND {
        let label = format!("python-{i}");
        let mut cmd = Command::new(&python);
        cmd.current_dir(examples().join("python"))
            .arg("counter.py")
            .args(counter_args(&locks, &counter, &log, &label));
        contenders.push(Contender::spawn(label, cmd, &ready_tx));
    }
    drop(ready_tx);

    // Open the gate once every contender has said it is waiting (or one has already exited,
    // which the checks below will report).
    let mut waiting = 0;
    while waiting < contenders.len() {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => waiting += 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if contenders.iter_mut().any(|c| c.exited()) {
                    break;
                }
            }
        }
        if started.elapsed() > HANG_GUARD {
            break;
        }
    }
    let gate_opened = Instant::now();
    gate.open();

    let mut failed = Vec::new();
    for contender in contenders {
        let label = contender.label.clone();
        let (status, text) = contender.finish(started + HANG_GUARD);
        match status {
            Some(s) if s.success() => {}
            Some(s) => failed.push(format!("{label} failed ({s}):\n{text}")),
            None => failed.push(format!(
                "{label} was still running after {HANG_GUARD:?} and was killed:\n{text}"
            )),
        }
    }
    let hammer_time = gate_opened.elapsed();
    assert!(
        failed.is_empty(),
        "contenders failed:\n{}",
        failed.join("\n")
    );

    let total = 4 * PER_KIND * ROUNDS;
    assert_eq!(count(&counter), total, "the shared counter");
    assert_exclusive(&log, total);

    // What the run looked like (information only; nothing here is asserted).
    let holds = intervals::parse(&std::fs::read_to_string(&log).unwrap(), "").unwrap();
    let mut by_start = holds.clone();
    by_start.sort_by_key(|h| h.start);
    let switches = by_start.windows(2).filter(|w| w[0].who != w[1].who).count();
    let kind = |who: &str| {
        who.rsplit_once('-')
            .map_or(who.to_owned(), |(k, _)| k.to_owned())
    };
    let kind_switches = by_start
        .windows(2)
        .filter(|w| kind(&w[0].who) != kind(&w[1].who))
        .count();
    let report = intervals::check(holds).unwrap();
    say(&format!(
        "{} contenders x {ROUNDS} rounds: {total} holds, none overlapping; the holder changed \
         {switches} times ({kind_switches} times between kinds of host); smallest gap between holds {} us; {waiting} contenders were waiting \
         at the gate; hammering took {:.1}s",
        4 * PER_KIND,
        report.min_gap_ns.unwrap_or(0) / 1000,
        hammer_time.as_secs_f64()
    ));
}

/// A line on the real stderr, past libtest's capture, so CI logs show it (the skip notice,
/// the setup steps, the summary).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "other_languages: {line}");
}

/// `--locks ... --lock ... --counter ... --log ... --rounds ... --label ...` for the Node and
/// Python counters.
fn counter_args(locks: &Path, counter: &Path, log: &Path, label: &str) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "--locks".into(),
        path(locks),
        "--lock".into(),
        LOCK.into(),
        "--counter".into(),
        path(counter),
        "--log".into(),
        path(log),
        "--rounds".into(),
        ROUNDS.to_string(),
        "--label".into(),
        label.into(),
    ]
}

// --- Holders and waiters in Node and Python: refresh, signals, the queue -----------------------

/// The two wrapper hosts.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `node hold.mjs` in examples/node.
    Node,
    /// `.venv/bin/python hold.py` in examples/python.
    Python,
}

/// `hold.mjs` / `hold.py` on lock `lock` in `locks`, with more arguments (`--hold-ms`, ...).
fn hold_command(kind: Kind, locks: &Path, lock: &str, args: &[&str]) -> Command {
    let hosts = hosts();
    let mut cmd = match kind {
        Kind::Node => {
            let mut c = Command::new("node");
            c.current_dir(&hosts.node_dir).arg("hold.mjs");
            c
        }
        Kind::Python => {
            let mut c = Command::new(&hosts.python);
            c.current_dir(examples().join("python")).arg("hold.py");
            c
        }
    };
    cmd.env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
        .arg("--locks")
        .arg(locks)
        .args(["--lock", lock])
        .args(args);
    // Whatever this test run inherited: started as a background job of a non-interactive
    // shell (as CI may be), SIGINT is ignored, and Python then never raises KeyboardInterrupt.
    default_signals(&mut cmd);
    cmd
}

/// A process whose stdout and stderr lines are read by threads, to wait for a line.
struct Watched {
    /// What it is, for messages.
    what: String,
    /// The process.
    child: Child,
    /// Lines as they come (`out: ...` / `err: ...`).
    lines: mpsc::Receiver<String>,
    /// Every line seen so far.
    seen: Vec<String>,
}

impl Watched {
    /// Start `cmd` with both outputs piped.
    fn spawn(what: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {what} ({cmd:?}): {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (tag, pipe) in [
            ("out", Box::new(out) as Box<dyn std::io::Read + Send>),
            ("err", Box::new(err)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(format!("{tag}: {line}"));
                }
            });
        }
        Watched {
            what: what.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (at most the hang guard) for a line containing `text`; panics if the process ends
    /// first.
    fn wait_for(&mut self, text: &str) {
        self.wait_for_any(&[text]);
    }

    /// Wait (at most the hang guard) for a line containing one of `texts`; returns which came
    /// first. Panics if the process ends first.
    fn wait_for_any(&mut self, texts: &[&str]) -> usize {
        let started = Instant::now();
        while started.elapsed() < HANG_GUARD {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let hit = texts.iter().position(|t| line.contains(t));
                    self.seen.push(line);
                    if let Some(i) = hit {
                        return i;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "{} never said any of {texts:?}; it said:\n{}",
            self.what,
            self.seen.join("\n")
        );
    }

    /// Whether it has said a line containing `text` (reading what has come so far).
    fn said(&mut self, text: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().any(|l| l.contains(text))
    }

    /// Send `signal` to the process.
    fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
    }

    /// Wait for the process to exit within `limit` (killing it and returning None if it does
    /// not); its status and everything it said.
    fn finish_within(&mut self, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end with the pipes; take what is left.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for Watched {
    /// A process left running by a failing test is killed.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lock `lock`'s row of `status --json`.
fn state_of(locks: &Path, lock: &str) -> serde_json::Value {
    common::status(locks)
        .into_iter()
        .find(|r| r["name"] == lock)
        .unwrap_or_else(|| panic!("no lock {lock} in status"))
}

/// A Node and a Python holder whose body outlives three times the lock's timeout keep the lock
/// all along: they refresh it while the body runs, so other processes trying it in the
/// meantime never get in, and the release is in time.
#[test]
fn node_and_python_holders_refresh_while_the_body_outlives_the_timeout() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    for kind in [Kind::Node, Kind::Python] {
        let scratch = Scratch::new("wrapper-refresh");
        let locks = scratch.dir("locks");
        // Timeout 2 s, body 7 s (more than 3x): without refreshing, the lock expires three
        // times over and the contenders below take it over.
        let cmd = hold_command(
            kind,
            &locks,
            "long",
            &["--timeout-ms", "2000", "--hold-ms", "7000"],
        );
        let mut holder = Watched::spawn(&format!("{kind:?} holder"), cmd);
        holder.wait_for("out: held");
        // Others try the lock until the holder says it released it. Whether one of them got
        // in while the body ran shows in the holder's release: a takeover makes it fail with
        // `compromised` (a try that lands between the release and the holder's exit is fine).
        let mut tries = 0;
        while holder.child.try_wait().unwrap().is_none() && !holder.said("out: released") {
            let o = output(lockbydir(&locks).args([
                "exec",
                "--quiet",
                "--patience",
                "0",
                "--lease",
                "1s",
                "long",
                "--",
                "true",
            ]));
            if o.status.success() && !holder.said("out: released") {
                // Got in: the holder must now find its lock compromised (checked below).
                say(&format!("{kind:?}: a try got the lock while the body ran"));
            }
            tries += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, said) = holder.finish_within(HANG_GUARD);
        assert!(
            status.is_some_and(|s| s.success()) && said.contains("out: released ok"),
            "{kind:?} holder lost the lock or did not release it in time ({status:?}):\n{said}"
        );
        assert!(
            tries >= 10,
            "{kind:?}: only {tries} tries by others while the body ran"
        );
        say(&format!(
            "{kind:?} holder kept a 2s lock through a 7s body; others tried {tries} times"
        ));
    }
}

/// A Node or Python holder that stalls (SIGSTOP) past its timeout is taken over; when it goes
/// on, its refresher finds the lock lost and the end of its body fails loudly with
/// `compromised` (Node also aborts `grant.signal` at once) instead of passing as a success.
#[test]
fn node_and_python_holders_that_lose_the_lock_fail_loudly() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    for kind in [Kind::Node, Kind::Python] {
        let scratch = Scratch::new("wrapper-lost");
        let locks = scratch.dir("locks");
        let cmd = hold_command(
            kind,
            &locks,
            "lost",
            &["--timeout-ms", "1000", "--hold-ms", "6000"],
        );
        let mut holder = Watched::spawn(&format!("{kind:?} holder"), cmd);
        holder.wait_for("out: held");
        holder.signal(libc::SIGSTOP);
        // Waits for the stalled holder's deadline, then takes the lock over.
        let o = output(
            lockbydir(&locks).args(["exec", "--quiet", "--holder", "taker", "lost", "--", "true"]),
        );
        holder.signal(libc::SIGCONT);
        assert!(o.status.success(), "the taker failed: {}", stderr(&o));
        let (status, said) = holder.finish_within(HANG_GUARD);
        assert!(
            status.is_some_and(|s| !s.success())
                && said.contains("compromised")
                && !said.contains("out: released"),
            "{kind:?} holder did not fail with `compromised` ({status:?}):\n{said}"
        );
        if let Kind::Node = kind {
            assert!(
                said.contains("out: lost 1"),
                "grant.signal was not aborted:\n{said}"
            );
        }
    }
}

/// A Node or Python holder ended by SIGINT, SIGTERM or SIGHUP releases the lock before it exits: the
/// lock is free at once, not after its (60 s) timeout.
#[test]
fn interrupted_or_terminated_node_and_python_holders_release_at_once() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let mut kept = Vec::new();
    for kind in [Kind::Node, Kind::Python] {
        for (signal, name) in [
            (libc::SIGINT, "SIGINT"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGHUP, "SIGHUP"),
        ] {
            let scratch = Scratch::new("wrapper-signal");
            let locks = scratch.dir("locks");
            let mut cmd = hold_command(
                kind,
                &locks,
                "job",
                &["--timeout-ms", "60000", "--hold-ms", "inf"],
            );
            default_signals(&mut cmd);
            let mut holder = Watched::spawn(&format!("{kind:?} holder"), cmd);
            holder.wait_for("out: held");
            holder.signal(signal);
            let (status, said) = holder.finish_within(HANG_GUARD);
            let status =
                status.unwrap_or_else(|| panic!("{kind:?} holder ignored {name}:\n{said}"));
            assert!(!status.success(), "{kind:?} holder exited 0 after {name}");
            let row = state_of(&locks, "job");
            if row["state"] != "free" {
                kept.push(format!(
                    "{kind:?} after {name} ({status}): lock is {row}; it said:\n{said}"
                ));
            }
        }
    }
    assert!(
        kept.is_empty(),
        "holders that kept the lock:\n{}",
        kept.join("\n")
    );
}

/// A Python holder started with SIGHUP ignored (as `nohup` does) keeps ignoring it: it goes on
/// holding, and releases normally at the end.
#[test]
fn a_python_holder_under_nohup_ignores_sighup() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let scratch = Scratch::new("wrapper-nohup");
    let locks = scratch.dir("locks");
    let inner = hold_command(Kind::Python, &locks, "job", &["--hold-ms", "3000"]);
    // `trap '' HUP` then `exec`: the program starts with SIGHUP ignored, as under nohup.
    let mut cmd = Command::new("sh");
    cmd.current_dir(inner.get_current_dir().unwrap())
        .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
        .args(["-c", r#"trap '' HUP; exec "$@""#, "sh"])
        .arg(inner.get_program())
        .args(inner.get_args());
    let mut holder = Watched::spawn("Python holder under nohup", cmd);
    holder.wait_for("out: held");
    holder.signal(libc::SIGHUP);
    let (status, said) = holder.finish_within(HANG_GUARD);
    assert!(
        status.is_some_and(|s| s.success()) && said.contains("out: released ok"),
        "the Python holder did not ignore SIGHUP ({status:?}):\n{said}"
    );
}

/// A Node or Python waiter interrupted while it waits stops waiting at once (while the lock is
/// still held by someone else), never takes the lock, and leaves no ticket in the queue.
#[test]
fn interrupted_node_and_python_waiters_stop_waiting() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    for (kind, signal, name) in [
        (Kind::Python, libc::SIGINT, "SIGINT"),
        (Kind::Python, libc::SIGTERM, "SIGTERM"),
        (Kind::Node, libc::SIGINT, "SIGINT"),
        (Kind::Node, libc::SIGTERM, "SIGTERM"),
    ] {
        let scratch = Scratch::new("wrapper-wait-signal");
        let locks = scratch.dir("locks");
        let mut gate = Gate::close(&locks, "busy", scratch.join("go"));
        let cmd = hold_command(kind, &locks, "busy", &["--hold-ms", "0"]);
        let mut waiter = Watched::spawn(&format!("{kind:?} waiter"), cmd);
        waiter.wait_for("blocking waiting for lock");
        waiter.signal(signal);
        // Generous: only a bound for a waiter that ignores the signal (the gate holds the
        // lock for as long as this test wants).
        let (status, said) = waiter.finish_within(Duration::from_secs(30));
        assert!(
            status.is_some(),
            "{kind:?} waiter was still waiting 30s after {name}:\n{said}"
        );
        assert!(
            !said.contains("out: held"),
            "{kind:?} waiter took the lock:\n{said}"
        );
        let row = state_of(&locks, "busy");
        assert_eq!(
            row["holder"], "gate",
            "{kind:?}: the gate lost the lock: {row}"
        );
        let queue: Vec<_> = std::fs::read_dir(locks.join("busy.queue"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            queue.is_empty(),
            "{kind:?} waiter left tickets after {name}: {queue:?}"
        );
        gate.open();
    }
}

/// Node and Python waiters join the fair queue: behind two shell loops of `lockbydir exec`
/// (one process per round, so there is always one of them queued) each gets in while they
/// still run. How many rounds it waited is printed, not asserted.
#[test]
fn node_and_python_waiters_are_served_in_turn_behind_two_exec_loops() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let _ = hosts();
    for kind in [Kind::Node, Kind::Python] {
        // The loops go on until told to stop (at most this many rounds each), so that they are
        // still running whenever the waiter arrives, however slow its start.
        const LOOP_ROUNDS: usize = 2000;
        let scratch = Scratch::new("wrapper-queue");
        let stop = scratch.join("stop");
        let locks = scratch.dir("locks");
        let work = scratch.dir("work");
        std::fs::write(work.join("counter"), "0").unwrap();
        let log = work.join("log");
        let mut loops = Vec::new();
        for i in 0..2 {
            let script = format!(
                r#"for i in $(seq {LOOP_ROUNDS}); do [ -e "$4" ] && exit 0; "$0" --locks "$1" exec --quiet fair -- sh -c '{EXEC_INCREMENT}' sh "$2" "$3" || exit 1; done"#
            );
            let mut cmd = Command::new("sh");
            cmd.env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
                .env_remove("LOCKBYDIR_DIR")
                .arg("-c")
                .arg(script)
                .arg(env!("CARGO_BIN_EXE_lockbydir"))
                .arg(&locks)
                .arg(&work)
                .arg(format!("exec-{i}"))
                .arg(&stop);
            loops.push(Contender::spawn(
                format!("exec-{i}"),
                cmd,
                &mpsc::channel().0,
            ));
        }
        let rounds_done = || {
            std::fs::read_to_string(&log)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let started = Instant::now();
        while rounds_done() < 4 && started.elapsed() < HANG_GUARD {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Hold a while once in, so that the count read below is the one at the grant. A waiter
        // that comes while neither loop holds or waits (one exec has let go, the other's next
        // process is still starting) takes the lock at once; then another one comes, until one
        // has to wait.
        let mut node = None;
        for _ in 0..20 {
            let cmd = hold_command(
                kind,
                &locks,
                "fair",
                &["--hold-ms", "300", "--label", "waiter"],
            );
            let mut waiter = Watched::spawn(&format!("{kind:?} waiter"), cmd);
            if waiter.wait_for_any(&["blocking waiting for lock", "out: held"]) == 0 {
                node = Some(waiter);
                break;
            }
            let (status, said) = waiter.finish_within(HANG_GUARD);
            assert!(
                status.is_some_and(|s| s.success()),
                "{kind:?} waiter failed:\n{said}"
            );
        }
        let mut node = node.unwrap_or_else(|| {
            panic!("20 {kind:?} waiters in a row found the lock free between two exec loops")
        });
        let before = rounds_done();
        let asked = Instant::now();
        node.wait_for("out: held");
        let waited = asked.elapsed();
        let at_grant = rounds_done();
        let (status, said) = node.finish_within(HANG_GUARD);
        std::fs::write(&stop, "").unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "{kind:?} waiter failed:\n{said}"
        );
        for l in loops {
            let label = l.label.clone();
            let (status, text) = l.finish(Instant::now() + HANG_GUARD);
            assert!(
                status.is_some_and(|s| s.success()),
                "{label} failed:\n{text}"
            );
        }
        assert!(
            at_grant < 2 * LOOP_ROUNDS,
            "the {kind:?} waiter got in only after both exec loops had run out of rounds ({at_grant})"
        );
        say(&format!(
            "a {kind:?} waiter behind two exec loops got in after {} exec rounds ({:.2}s from its first wait)",
            at_grant - before,
            waited.as_secs_f64(),
        ));
    }
}

// --- The documented commands on a fresh machine, errors, the compiled-component cache -------

/// docs/other-languages.md's `node counter.mjs ...` and `python counter.py ...` lines work as written where
/// neither the lock directory nor the work directory nor the counter file exists yet.
#[test]
fn readme_counter_commands_work_on_a_fresh_machine() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let hosts = hosts();
    let scratch = Scratch::new("wrapper-fresh");
    // As /tmp/locks and /tmp/work on a fresh machine: nothing below `fresh` exists.
    let locks = scratch.join("fresh/locks");
    let work = scratch.join("fresh/work");
    let (counter, log) = (work.join("counter"), work.join("log"));
    let mut node = Command::new("node");
    node.current_dir(&hosts.node_dir)
        .arg("counter.mjs")
        .args(counter_args(&locks, &counter, &log, "node-0"));
    let mut python = Command::new(&hosts.python);
    python
        .current_dir(examples().join("python"))
        .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
        .arg("counter.py")
        .args(counter_args(&locks, &counter, &log, "python-0"));
    for (what, cmd) in [
        ("node counter.mjs", &mut node),
        ("python counter.py", &mut python),
    ] {
        let o = output(cmd);
        assert!(
            o.status.success(),
            "{what} failed on a fresh machine: {}",
            stderr(&o)
        );
    }
    assert_eq!(
        count(&counter),
        2 * ROUNDS,
        "the counter both made together"
    );
    assert_exclusive(&log, 2 * ROUNDS);
}

/// The first examples of docs/other-languages.md (`examples/node/first.mjs`,
/// `examples/python/first.py`) run as printed: each takes lock `nightly` in a lock directory
/// that did not exist, says its fence, and leaves the lock free; the second gets a greater
/// fence than the first.
#[test]
fn the_first_examples_run_as_printed() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let hosts = hosts();
    let scratch = Scratch::new("wrapper-first");
    let locks = scratch.join("new/locks");
    let mut node = Command::new("node");
    node.current_dir(&hosts.node_dir)
        .arg("first.mjs")
        .arg(&locks);
    let mut python = Command::new(&hosts.python);
    python
        .current_dir(examples().join("python"))
        .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
        .arg("first.py")
        .arg(&locks);
    let mut fences = Vec::new();
    for (what, cmd) in [
        ("node first.mjs", &mut node),
        ("python first.py", &mut python),
    ] {
        let o = output(cmd);
        assert!(o.status.success(), "{what} failed: {}", stderr(&o));
        let out = common::stdout(&o);
        let fence: u64 = out
            .trim()
            .strip_prefix("holding lock nightly with fence ")
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("{what} printed {out:?}"));
        fences.push(fence);
    }
    assert!(fences[0] < fences[1], "fences {fences:?}");
    assert_eq!(state_of(&locks, "nightly")["state"], "free");
}

/// A lock directory that does not exist is named in the wrappers' error, with what to do;
/// Python no longer says only "failed to add preopen dir".
#[test]
fn wrapper_errors_name_the_lock_directory_and_what_to_do() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let hosts = hosts();
    let scratch = Scratch::new("wrapper-errors");
    let missing = scratch.join("no-such-locks");
    let node_script = format!(
        "import {{ openLockDir }} from './lockbydir.mjs'; await openLockDir({:?});",
        missing.display().to_string()
    );
    let python_script = format!(
        "from lockbydir import LockDir\nLockDir({:?})",
        missing.display().to_string()
    );
    let mut node = Command::new("node");
    node.current_dir(&hosts.node_dir)
        .args(["--input-type=module", "-e", &node_script]);
    let mut python = Command::new(&hosts.python);
    python
        .current_dir(examples().join("python"))
        .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
        .args(["-c", &python_script]);
    for (what, cmd) in [("Node", &mut node), ("Python", &mut python)] {
        let o = output(cmd);
        let text = stderr(&o);
        assert!(
            !o.status.success(),
            "{what} opened a missing lock directory"
        );
        let path = missing.display().to_string();
        assert!(
            text.contains(&format!(
                "lock directory {path} cannot be used: it does not exist"
            )) && text.contains(&format!("mkdir -p {path}")),
            "{what}'s error does not say which directory and what to do:\n{text}"
        );
        assert!(
            !text.contains("preopen"),
            "{what}'s error is wasmtime's:\n{text}"
        );
        assert!(
            !missing.exists(),
            "{what} made the directory without being asked"
        );
    }
}

/// Python compiles the component once: the first `LockDir` writes the compiled code to the
/// cache directory (`$LOCKBYDIR_CACHE_DIR/python/`), and a cache file that does not load is
/// replaced rather than trusted.
#[test]
fn python_caches_the_compiled_component() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let hosts = hosts();
    let scratch = Scratch::new("wrapper-cache");
    let cache = scratch.join("cache");
    let locks = scratch.dir("locks");
    let script = format!(
        "import time\nfrom lockbydir import LockDir\nt = time.monotonic()\n\
         with LockDir({locks:?}).lock('c') as g: print('fence', g.fence)\n\
         print('ms', round((time.monotonic() - t) * 1000))",
        locks = locks.display().to_string()
    );
    let run = || {
        let o = output(
            Command::new(&hosts.python)
                .current_dir(examples().join("python"))
                .env("LOCKBYDIR_CACHE_DIR", &cache)
                .args(["-c", &script]),
        );
        assert!(o.status.success(), "python failed: {}", stderr(&o));
        common::stdout(&o)
    };
    let cached = || -> Vec<PathBuf> {
        std::fs::read_dir(cache.join("python"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let first = run();
    let files = cached();
    assert_eq!(files.len(), 1, "cache after the first LockDir: {files:?}");
    assert!(
        files[0].extension().is_some_and(|e| e == "cwasm"),
        "{files:?}"
    );
    let second = run();
    std::fs::write(&files[0], b"not compiled code").unwrap();
    let third = run();
    assert!(
        third.contains("fence 3"),
        "after a broken cache file: {third}"
    );
    assert_ne!(
        std::fs::read(&files[0]).unwrap(),
        b"not compiled code",
        "the broken cache file was kept"
    );
    let ms = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("ms "))
            .unwrap_or("?")
            .to_owned()
    };
    say(&format!(
        "Python LockDir + first acquire: {} ms compiling, {} ms from the cache, {} ms past a broken cache file",
        ms(&first),
        ms(&second),
        ms(&third)
    ));
}

// --- The wrappers as packages ----------------------------------------------------------------

/// `npm pack` in examples/node makes a package that a project installs and imports as
/// `lockbydir` without jco; `pip install examples/python` installs `lockbydir` with its
/// component inside, importable from anywhere.
#[test]
fn the_wrappers_install_as_packages() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let hosts = hosts();
    let scratch = Scratch::new("wrapper-packages");
    let locks = scratch.join("locks");
    let packed = scratch.dir("packed");
    let o = output(
        Command::new("npm")
            .args(["pack", "--quiet", "--pack-destination"])
            .arg(&packed)
            .current_dir(&hosts.node_dir),
    );
    assert!(o.status.success(), "npm pack failed: {}", stderr(&o));
    let tarball = packed.join(common::stdout(&o).trim());
    let consumer = scratch.dir("consumer");
    std::fs::write(
        consumer.join("package.json"),
        r#"{ "name": "consumer", "private": true, "type": "module" }"#,
    )
    .unwrap();
    setup(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--prefer-offline",
                "--quiet",
            ])
            .arg(&tarball)
            .current_dir(&consumer),
    );
    assert!(
        !consumer.join("node_modules/@bytecodealliance/jco").exists(),
        "installing the package brought jco along"
    );
    let script = format!(
        "import {{ openLockDir }} from 'lockbydir';\n\
         const lock = (await openLockDir({locks:?}, {{ create: true }})).lock('pkg');\n\
         await lock.withLock(async (g) => console.log('fence', g.fence));",
        locks = locks.display().to_string()
    );
    let o = output(
        Command::new("node")
            .args(["--input-type=module", "-e", &script])
            .current_dir(&consumer),
    );
    assert!(
        o.status.success() && common::stdout(&o).contains("fence 1"),
        "the installed npm package did not work: {}{}",
        common::stdout(&o),
        stderr(&o)
    );

    // Isolated mode (-I): neither the current directory nor examples/python is on the path.
    let script = format!(
        "import lockbydir\nprint('from', lockbydir.__file__)\n\
         with lockbydir.LockDir({locks:?}).lock('pkg') as g:\n    print('fence', g.fence)",
        locks = locks.display().to_string()
    );
    let o = output(
        Command::new(&hosts.python)
            .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
            .env_remove("LOCKBYDIR_COMPONENT")
            .args(["-I", "-c", &script])
            .current_dir(&scratch.0),
    );
    let out = common::stdout(&o);
    assert!(
        o.status.success() && out.contains("fence 2"),
        "the installed Python package did not work: {out}{}",
        stderr(&o)
    );
    let venv = hosts.python.parent().unwrap().parent().unwrap();
    assert!(
        out.contains(&format!("from {}", venv.join("lib").display())),
        "lockbydir was not imported from the virtualenv: {out}"
    );
}

/// A Node or Python program that exits while holding a lock it never released (an exit call,
/// an uncaught exception, a late uncaught exception in Node) gives the lock back on its way
/// out: the lock (timeout 60 s) is free at once.
#[test]
fn node_and_python_programs_that_exit_holding_release() {
    if let Some(why) = missing_tools() {
        say(&format!("skipped: {why}"));
        return;
    }
    let hosts = hosts();
    let scratch = Scratch::new("wrapper-exit");
    let locks = scratch.dir("locks");
    let dir = locks.display().to_string();
    let node_bodies = [
        "process.exit(3);",
        "throw new Error('boom');",
        "setTimeout(() => { throw new Error('late'); }, 10); await new Promise((r) => setTimeout(r, 60000));",
    ];
    let python_bodies = ["import sys\nsys.exit(4)", "raise RuntimeError('boom')"];
    let mut cases: Vec<(String, Command)> = Vec::new();
    for (i, body) in node_bodies.iter().enumerate() {
        let script = format!(
            "import {{ openLockDir }} from './lockbydir.mjs';\n\
             const lock = (await openLockDir({dir:?})).lock('node-{i}', {{ timeoutMs: 60000 }});\n\
             await lock.acquire();\n{body}"
        );
        let mut cmd = Command::new("node");
        cmd.current_dir(&hosts.node_dir)
            .args(["--input-type=module", "-e", &script]);
        cases.push((format!("node-{i}"), cmd));
    }
    for (i, body) in python_bodies.iter().enumerate() {
        let script = format!(
            "from lockbydir import LockDir\n\
             LockDir({dir:?}).lock('python-{i}', timeout_ms=60000).acquire()\n{body}"
        );
        let mut cmd = Command::new(&hosts.python);
        cmd.current_dir(examples().join("python"))
            .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
            .args(["-c", &script]);
        cases.push((format!("python-{i}"), cmd));
    }
    for (lock, mut cmd) in cases {
        let o = output(&mut cmd);
        assert!(
            !o.status.success(),
            "{lock}: the program did not fail as planned"
        );
        let row = state_of(&locks, &lock);
        assert_eq!(
            row["state"],
            "free",
            "{lock} kept its lock: {row}\n{}",
            stderr(&o)
        );
    }
}
