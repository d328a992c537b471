//! The host's wake-ups as `lockbydir exec` users see them: advertised where the lock
//! directory's filesystem delivers events, turned off by `LOCKBYDIR_NO_WAKEUPS=1`, and the
//! lock working the same either way.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::{Scratch, lockbydir, stderr, wait_until_held};

/// A holder of lock `job` in another process, until `release` appears (or 60 s pass).
fn hold(locks: &Path, release: &Path, mode: Option<&str>) -> Child {
    let mut cmd = lockbydir(locks);
    match mode {
        Some(value) => cmd.env("LOCKBYDIR_NO_WAKEUPS", value),
        None => cmd.env_remove("LOCKBYDIR_NO_WAKEUPS"),
    };
    let script = format!(
        "i=0; while [ ! -e '{}' ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done",
        release.display()
    );
    let mut child = cmd
        .args([
            "exec", "--holder", "holder", "job", "--", "sh", "-c", &script,
        ])
        .spawn()
        .unwrap();
    wait_until_held(locks, "job", "holder", &mut child);
    child
}

/// `exec --verbose job` behind a holder in another process that lets go `queued_for` after
/// the waiter is in line: its stderr.
fn wait_behind_holder(locks: &Path, no_wakeups: Option<&str>, queued_for: Duration) -> String {
    let release = locks.join("../release");
    let _ = std::fs::remove_file(&release);
    let mut holder = hold(locks, &release, None);
    let mut waiter = lockbydir(locks);
    match no_wakeups {
        Some(value) => waiter.env("LOCKBYDIR_NO_WAKEUPS", value),
        None => waiter.env_remove("LOCKBYDIR_NO_WAKEUPS"),
    };
    let waiter = waiter
        .args(["exec", "--verbose", "job", "--", "true"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let go once the waiter is in line (its ticket is in the queue).
    let queue = locks.join("job.queue");
    for _ in 0..3000 {
        if std::fs::read_dir(&queue).is_ok_and(|mut d| d.next().is_some()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(queued_for);
    std::fs::write(&release, "").unwrap();
    assert!(holder.wait().unwrap().success());
    let o = waiter.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

#[test]
fn exec_waits_with_wake_ups_on_a_local_filesystem_and_polls_when_they_are_turned_off() {
    let scratch = Scratch::new("wakeups-modes");
    let locks = scratch.dir("locks");
    let with = wait_behind_holder(&locks, None, Duration::ZERO);
    assert!(with.contains("acquired lock `job`"), "{with}");
    assert!(
        with.contains("waited with wake-ups from the host"),
        "{with}"
    );
    let without = wait_behind_holder(&locks, Some("1"), Duration::ZERO);
    assert!(without.contains("acquired lock `job`"), "{without}");
    assert!(
        without.contains("waited by polling (LOCKBYDIR_NO_WAKEUPS=1 is set)"),
        "{without}"
    );
    // Only `1` turns them off.
    let other = wait_behind_holder(&locks, Some("0"), Duration::ZERO);
    assert!(
        other.contains("waited with wake-ups from the host"),
        "{other}"
    );
}

#[test]
fn processes_take_turns_exactly_with_wake_ups_off() {
    let scratch = Scratch::new("wakeups-off-hammer");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let exe = env!("CARGO_BIN_EXE_lockbydir");
    let rounds = 15;
    let children: Vec<Child> = (0..2)
        .flat_map(|i| [(i, Some("1")), (i, None)])
        .map(|(i, off)| {
            let script = format!(
                "for i in $(seq {rounds}); do \"{exe}\" --locks \"$0\" exec --quiet shared -- sh -c '{}' sh \"$1\" exec-{i} || exit 1; done",
                common::EXEC_INCREMENT
            );
            let mut sh = Command::new("sh");
            sh.env("LOCKBYDIR_CACHE_DIR", common::cache_dir());
            match off {
                Some(v) => sh.env("LOCKBYDIR_NO_WAKEUPS", v),
                None => sh.env_remove("LOCKBYDIR_NO_WAKEUPS"),
            };
            sh.arg("-c").arg(script).arg(&locks).arg(&work).spawn().unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a contender failed");
    }
    assert_eq!(common::count(&work.join("counter")), 4 * rounds);
    common::assert_exclusive(&work.join("log"), 4 * rounds);
}

/// The counts in `exec --verbose`'s line about the wait: `(looks at the lock, sleeps ended
/// by a change)`.
fn wait_counts(stderr: &str) -> (u64, Option<u64>) {
    let line = stderr
        .lines()
        .find(|l| l.contains("lockbydir: waited "))
        .unwrap_or_else(|| panic!("no line about the wait: {stderr}"));
    let number_before = |what: &str| {
        line.split(what).next().and_then(|head| {
            head.rsplit(|c: char| !c.is_ascii_digit())
                .find(|w| !w.is_empty())
                .and_then(|w| w.parse().ok())
        })
    };
    let stats = number_before(" looks at the lock").expect("a count of looks");
    let woken = line
        .contains(" ended by a change")
        .then(|| number_before(" ended by a change").expect("a count of woken sleeps"));
    (stats, woken)
}

/// Needs the waiters' wake-up pacing (they sleep on the entry they wait for when the host
/// wakes them): with it, a waiter behind another process's holder looks a handful of times,
/// woken by the release; polling, it looks every 200 µs near the head of the line.
#[test]
fn e2e_a_waiter_woken_by_the_host_looks_a_handful_of_times_where_a_polling_one_looks_thousands() {
    let scratch = Scratch::new("wakeups-e2e");
    let locks = scratch.dir("locks");
    let held = Duration::from_secs(1);
    let with = wait_behind_holder(&locks, None, held);
    let (with_stats, woken) = wait_counts(&with);
    assert!(
        woken.is_some_and(|w| w >= 1),
        "not woken by the release: {with}"
    );
    let without = wait_behind_holder(&locks, Some("1"), held);
    let (without_stats, _) = wait_counts(&without);
    assert!(with_stats <= 50, "{with}");
    assert!(without_stats > 10 * with_stats, "{with}\n{without}");
}
