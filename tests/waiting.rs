//! WASI 0.3 plugins that wait without blocking (`lockbydir:waiting/waiting@0.1.0`), run by
//! `lockbydir run`: many waits from one instance beside other kinds of contender, a wait cut
//! short by a timer, the policy's bounds, and the host's threads while a thousand tasks wait.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    EXEC_INCREMENT, Scratch, assert_exclusive, cache_dir, count, guest, lockbydir, wait_until_held,
};

/// `lockbydir run` of the `tasks` plugin with `work` granted as `/work`, the `run` options
/// `flags`, and the plugin's arguments `args`.
fn tasks(
    locks: &std::path::Path,
    work: &std::path::Path,
    flags: &[&str],
    args: &[&str],
) -> Command {
    let mut run = lockbydir(locks);
    run.args(["run", "--quiet", "--dir"])
        .arg(format!("{}::/work", work.display()))
        .args(flags)
        .arg(guest("tasks.wasm"))
        .arg("--")
        .args(args);
    run
}

/// An `exec` that holds lock `name` as `holder` until the file `go` exists; returns once it
/// holds the lock.
fn hold_until(locks: &Path, name: &str, holder: &str, go: &Path) -> Child {
    let mut child = lockbydir(locks)
        .args([
            "exec", "--quiet", "--holder", holder, name, "--", "sh", "-c",
        ])
        .arg("while [ ! -e \"$0\" ]; do sleep 0.02; done")
        .arg(go)
        .spawn()
        .unwrap();
    wait_until_held(locks, name, holder, &mut child);
    child
}

/// Tickets in lock `name`'s queue now.
fn queued(locks: &Path, name: &str) -> usize {
    std::fs::read_dir(locks.join(format!("{name}.queue"))).map_or(0, |d| d.count())
}

/// Wait until lock `name` has at least `n` tickets queued (panics if `child` ends first).
fn wait_queued(locks: &Path, name: &str, n: usize, child: &mut Child) {
    while queued(locks, name) < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the plugin ended before {n} waits on {name} queued"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything `child` writes on stdout, one line at a time; once a line satisfies `at`, the
/// file `go` is made (its holder lets go).
fn said_opening_at(child: &mut Child, go: &Path, at: impl Fn(&str) -> bool) -> String {
    let mut said = String::new();
    let mut opened = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        said += &format!("{line}\n");
        if !opened && at(&line) {
            std::fs::write(go, "").unwrap();
            opened = true;
        }
    }
    said
}

#[test]
fn a_hundred_waits_of_one_async_instance_go_through_in_order_beside_exec_and_a_0_2_plugin() {
    let dir = Scratch::new("waiting-hundred");
    let (locks, work) = (dir.dir("locks"), dir.dir("work"));
    std::fs::write(work.join("counter"), "0").unwrap();
    let rounds = 20;
    // Held until every task has queued, in the order it started (one that found the lock free
    // could take it before those that wait: bounded fairness lets a newcomer in for a moment
    // after a release, and so does a free lock nobody has marked).
    let go = dir.join("go");
    let mut holder = lockbydir(&locks)
        .args([
            "exec", "--quiet", "--holder", "first", "shared", "--", "sh", "-c",
        ])
        .arg("while [ ! -e \"$0\" ]; do sleep 0.02; done")
        .arg(&go)
        .spawn()
        .unwrap();
    wait_until_held(&locks, "shared", "first", &mut holder);
    let mut async_plugin = tasks(&locks, &work, &[], &["count", "--lock", "shared"]);
    async_plugin
        .args(["--counter", "/work/counter", "--log", "/work/log"])
        .args(["--waits", "100", "--label", "tasks", "--fairness", "fifo"])
        .stdout(Stdio::piped());
    let mut async_plugin = async_plugin.spawn().unwrap();
    wait_queued(&locks, "shared", 100, &mut async_plugin);
    let mut others = Vec::new();
    let mut plugin = lockbydir(&locks);
    plugin
        .args(["run", "--quiet", "--dir"])
        .arg(format!("{}::/work", work.display()))
        .arg(guest("counter.wasm"))
        .args(["--", "--lock", "shared", "--counter", "/work/counter"])
        .args(["--log", "/work/log", "--rounds", &rounds.to_string()])
        .args(["--label", "counter"]);
    others.push(plugin.spawn().unwrap());
    let exe = env!("CARGO_BIN_EXE_lockbydir");
    let script = format!(
        "for i in $(seq {rounds}); do \"{exe}\" --locks \"$0\" exec --quiet shared -- sh -c '{EXEC_INCREMENT}' sh \"$1\" exec || exit 1; done"
    );
    let mut sh = Command::new("sh");
    sh.env("LOCKBYDIR_CACHE_DIR", cache_dir())
        .arg("-c")
        .arg(script)
        .arg(&locks)
        .arg(&work);
    others.push(sh.spawn().unwrap());
    std::fs::write(&go, "").unwrap();
    let out = async_plugin.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the async plugin failed: {said}");
    for mut other in others {
        assert!(other.wait().unwrap().success(), "a contender failed");
    }
    assert!(holder.wait().unwrap().success());
    assert_eq!(count(&work.join("counter")), 100 + 2 * rounds);
    assert_exclusive(&work.join("log"), 100 + 2 * rounds);
    // The tasks queued in the order they started, and were served in that order, whoever
    // else came in between.
    let order: Vec<usize> = said
        .lines()
        .find_map(|l| l.strip_prefix("held in order: "))
        .unwrap_or_else(|| panic!("no order in {said:?}"))
        .split(' ')
        .map(|i| i.parse().unwrap())
        .collect();
    assert_eq!(order, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_task_waits_for_one_lock_while_another_takes_a_second() {
    let dir = Scratch::new("waiting-show");
    let (locks, work) = (dir.dir("locks"), dir.dir("work"));
    let go = dir.join("go");
    let mut holder = hold_until(&locks, "a", "holder", &go);
    let mut plugin = tasks(
        &locks,
        &work,
        &[],
        &["show", "--lock-a", "a", "--lock-b", "b"],
    );
    let mut plugin = plugin.stdout(Stdio::piped()).spawn().unwrap();
    // Task 1 waits for a (held) while task 2 takes and releases b; then a is let go.
    let said = said_opening_at(&mut plugin, &go, |l| l == "task 2: released b");
    assert!(plugin.wait().unwrap().success(), "{said}");
    let at = |line: &str| {
        said.lines()
            .position(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line:?} in {said:?}"))
    };
    // Task 2 took and released b while task 1 was still waiting for a.
    assert!(at("task 1: waiting for a") < at("task 2: got b"), "{said}");
    assert!(at("task 2: released b") < at("task 1: got a"), "{said}");
    assert!(holder.wait().unwrap().success());
}

#[test]
fn a_wait_cut_short_by_a_timer_leaves_no_ticket_and_never_takes_the_lock() {
    let dir = Scratch::new("waiting-give-up");
    let (locks, work) = (dir.dir("locks"), dir.dir("work"));
    let go = dir.join("go");
    let mut holder = hold_until(&locks, "bed", "sleeper", &go);
    let mut plugin = tasks(
        &locks,
        &work,
        &[],
        &["give-up", "--lock", "bed", "--after-ms", "600"],
    );
    let mut plugin = plugin.stdout(Stdio::piped()).spawn().unwrap();
    // The holder lets go only once the plugin has given up and looked at the line.
    let said = said_opening_at(&mut plugin, &go, |l| l.starts_with("waiters now: "));
    assert!(plugin.wait().unwrap().success(), "{said}");
    assert!(said.contains("waiters while waiting: 1\n"), "{said}");
    assert!(said.contains("gave up after 600 ms\n"), "{said}");
    assert!(
        said.contains("waiters now: 0; this handle's fence: None\n"),
        "{said}"
    );
    assert!(said.contains("once free: LockState::Free("), "{said}");
    assert!(said.ends_with("this handle's fence: None\n"), "{said}");
    assert!(holder.wait().unwrap().success());
}

#[test]
fn async_waits_stay_within_the_plugin_s_limits() {
    let dir = Scratch::new("waiting-limits");
    let (locks, work) = (dir.dir("locks"), dir.dir("work"));
    let (go_a, go_bc) = (dir.join("go-a"), dir.join("go-bc"));
    let mut holders = vec![
        hold_until(&locks, "a", "holder", &go_a),
        hold_until(&locks, "b", "holder", &go_bc),
        hold_until(&locks, "c", "holder", &go_bc),
    ];
    let mut plugin = tasks(
        &locks,
        &work,
        &["--max-locks", "1"],
        &[
            "limits",
            "--lock",
            "a",
            "--others",
            "b,c",
            "--hold-ms",
            "800",
        ],
    );
    let mut plugin = plugin.stdout(Stdio::piped()).spawn().unwrap();
    // Both waits on one handle of a have been asked for (the second refused), the first in
    // line: let a go. Then b and c, once both are waited for: at about the same time.
    wait_queued(&locks, "a", 1, &mut plugin);
    std::fs::write(&go_a, "").unwrap();
    wait_queued(&locks, "b", 1, &mut plugin);
    wait_queued(&locks, "c", 1, &mut plugin);
    std::fs::write(&go_bc, "").unwrap();
    let o = plugin.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{said}");
    // One wait per handle: the second one on the same handle is refused at once.
    let lines: Vec<&str> = said.lines().collect();
    let waits: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("same handle"))
        .collect();
    assert_eq!(waits.len(), 2, "{said}");
    assert!(
        waits.iter().any(|l| l.contains("acquired"))
            && waits
                .iter()
                .any(|l| l.contains("denied: one wait per lock handle at a time")),
        "{said}"
    );
    // b and c freed at about the same time: both waits were granted, but one lock at most
    // may be held (--max-locks 1): the grant that would make two is given back and refused.
    let b = lines.iter().find(|l| l.starts_with("b: ")).unwrap();
    let c = lines.iter().find(|l| l.starts_with("c: ")).unwrap();
    let acquired = [b, c].iter().filter(|l| l.contains("acquired")).count();
    assert_eq!(acquired, 1, "{said}");
    for holder in &mut holders {
        assert!(holder.wait().unwrap().success());
    }
    // Nothing is left held or queued.
    for row in common::status(&locks) {
        assert_ne!(row["state"], "held", "{row}");
    }
}

/// The threads of process `pid` (`Threads:` of /proc/PID/status).
fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn a_thousand_tasks_wait_on_a_handful_of_threads() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc to count threads in");
        return;
    }
    let dir = Scratch::new("waiting-thousand");
    let (locks, work) = (dir.dir("locks"), dir.dir("work"));
    std::fs::write(work.join("counter"), "0").unwrap();
    let go = dir.join("go");
    let mut holder = hold_until(&locks, "shared", "holder", &go);
    let mut run = tasks(
        &locks,
        &work,
        &["--max-handles", "1000"],
        &["count", "--lock", "shared"],
    );
    run.args(["--counter", "/work/counter", "--log", "/work/log"])
        .args(["--waits", "1000", "--label", "t"])
        .stdout(Stdio::piped());
    let mut child = run.spawn().unwrap();
    // The thousand tasks queue up behind the holder; the threads, meanwhile and a while after.
    let mut most_threads = 0;
    let mut sample = |child: &Child| {
        if let Some(n) = threads(child.id()) {
            most_threads = most_threads.max(n);
        }
    };
    while queued(&locks, "shared") < 1000 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the plugin ended early"
        );
        sample(&child);
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        sample(&child);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&go, "").unwrap();
    assert!(holder.wait().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("1,000 tasks queued at once: at most {most_threads} threads in the host process");
    // The host's own threads (main, the executor's blocking pool, wasmtime's, inotify's):
    // nothing per wait.
    assert!(most_threads <= 16, "{most_threads} threads for 1,000 waits");
    assert_eq!(count(&work.join("counter")), 1000);
    assert_exclusive(&work.join("log"), 1000);
}
