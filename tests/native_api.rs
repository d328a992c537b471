//! The lock from plain Rust (`lockbydir_protocol::guard`) against `lockbydir exec` on the same
//! lock directory: they take turns, see each other as holders, and a native guard that was
//! taken over learns it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{EXEC_INCREMENT, Scratch, assert_exclusive, cache_dir, count, lockbydir, output};
use lockbydir_protocol::guard::{Attempt, LockDir};
use lockbydir_protocol::{Error, Released};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The native counterpart of `EXEC_INCREMENT`: a read-modify-write of `work/counter` under
/// the lock, logged as `<start-ns> <end-ns> <fence> <label>` to `work/log`.
fn native_increment(work: &Path, fence: u64, label: &str) {
    let start = now_ns();
    let n = count(&work.join("counter"));
    std::fs::write(work.join("counter"), format!("{}\n", n + 1)).unwrap();
    let end = now_ns();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join("log"))
        .unwrap();
    writeln!(log, "{start} {end} {fence} {label}").unwrap();
}

/// A command for `exec` that holds the lock until `stop` exists.
fn hold_until(stop: &Path) -> [String; 4] {
    [
        "sh".into(),
        "-c".into(),
        r#"while [ ! -e "$0" ]; do sleep 0.02; done"#.into(),
        stop.display().to_string(),
    ]
}

#[test]
fn native_guards_and_exec_take_turns_on_one_lock() {
    const ROUNDS: usize = 20;
    let scratch = Scratch::new("native-turns");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();

    let mut loops = Vec::new();
    for i in 0..2 {
        let exe = env!("CARGO_BIN_EXE_lockbydir");
        let script = format!(
            "for i in $(seq {ROUNDS}); do \"{exe}\" --locks \"$0\" exec --quiet shared -- sh -c '{EXEC_INCREMENT}' sh \"$1\" exec-{i} || exit 1; done"
        );
        let mut sh = Command::new("sh");
        sh.env("LOCKBYDIR_CACHE_DIR", cache_dir())
            .arg("-c")
            .arg(script)
            .arg(&locks)
            .arg(&work);
        loops.push(sh.spawn().unwrap());
    }
    let natives: Vec<_> = (0..2)
        .map(|i| {
            let (locks, work) = (locks.clone(), work.clone());
            std::thread::spawn(move || {
                let dir = LockDir::open(&locks).unwrap();
                let label = format!("native-{i}");
                for _ in 0..ROUNDS {
                    let guard = dir.lock("shared").holder(&label).lock().unwrap();
                    native_increment(&work, guard.fence(), &label);
                    assert_eq!(guard.release().unwrap(), Released::InTime);
                }
            })
        })
        .collect();
    for native in natives {
        native.join().expect("a native contender failed");
    }
    for mut child in loops {
        assert!(child.wait().unwrap().success(), "an exec loop failed");
    }
    assert_eq!(count(&work.join("counter")), 4 * ROUNDS);
    assert_exclusive(&work.join("log"), 4 * ROUNDS);
}

#[test]
fn contention_is_a_value_both_ways_and_drop_releases() {
    let scratch = Scratch::new("native-busy");
    let locks = scratch.dir("locks");
    let stop = scratch.join("stop");
    let mut holder = lockbydir(&locks)
        .args(["exec", "--quiet", "--holder", "exec-holder", "shared", "--"])
        .args(hold_until(&stop))
        .spawn()
        .unwrap();
    let row = common::wait_until_held(&locks, "shared", "exec-holder", &mut holder);

    let dir = LockDir::open(&locks).unwrap();
    match dir.lock("shared").try_lock().unwrap() {
        Attempt::Busy(Some(h)) => {
            assert_eq!(h.label, "exec-holder");
            assert_eq!(serde_json::json!(h.fence), row["fence"]);
        }
        other => panic!("expected busy, held by exec-holder; got {other:?}"),
    }
    let gave_up = dir
        .lock("shared")
        .try_lock_for(Duration::from_millis(300))
        .unwrap();
    assert!(
        matches!(&gave_up, Attempt::Busy(Some(h)) if h.label == "exec-holder"),
        "{gave_up:?}"
    );
    assert!(gave_up.acquired().is_none());

    // Once exec's command ends, a native waiter gets the lock, with a greater fence.
    let waiter = {
        let dir = dir.clone();
        std::thread::spawn(move || dir.lock("shared").holder("native-holder").lock())
    };
    std::fs::write(&stop, "").unwrap();
    assert!(holder.wait().unwrap().success());
    let guard = waiter.join().unwrap().unwrap();
    assert!(guard.fence() > row["fence"].as_u64().unwrap());

    // exec sees the native holder: -n is busy (exit 75) and names it.
    let o = output(lockbydir(&locks).args(["exec", "-n", "shared", "--", "true"]));
    assert_eq!(o.status.code(), Some(75), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("native-holder"),
        "{}",
        common::stderr(&o)
    );

    // Dropping the guard releases: exec -n gets it at once.
    drop(guard);
    let o = output(lockbydir(&locks).args(["exec", "-n", "shared", "--", "true"]));
    assert!(o.status.success(), "{}", common::stderr(&o));
}

#[test]
fn a_guard_taken_over_by_exec_reports_compromised() {
    let scratch = Scratch::new("native-lost");
    let locks = scratch.dir("locks");
    let stop = scratch.join("stop");
    let dir = LockDir::open(&locks).unwrap();
    let mut guard = dir
        .lock("shared")
        .holder("native-slow")
        .lease(Duration::from_millis(200))
        .lock()
        .unwrap();
    let fence = guard.fence();
    // exec waits for the deadline (the native guard never refreshes), then takes over.
    let mut taker = lockbydir(&locks)
        .args(["exec", "--quiet", "--holder", "exec-taker", "shared", "--"])
        .args(hold_until(&stop))
        .spawn()
        .unwrap();
    common::wait_until_held(&locks, "shared", "exec-taker", &mut taker);

    match guard.refresh() {
        Err(Error::Compromised {
            fence: lost,
            now_held_by: Some(h),
        }) => {
            assert_eq!(lost, fence);
            assert_eq!(h.label, "exec-taker");
            assert!(h.fence > fence);
        }
        other => panic!("expected compromised, now held by exec-taker; got {other:?}"),
    }
    assert!(!guard.is_held());
    // The loss changed nothing: the release after it does not free exec's lock.
    assert_eq!(guard.release(), Err(Error::NotHeld));
    let o = output(lockbydir(&locks).args(["exec", "-n", "shared", "--", "true"]));
    assert_eq!(o.status.code(), Some(75), "{}", common::stderr(&o));

    std::fs::write(&stop, "").unwrap();
    assert!(taker.wait().unwrap().success());
}

#[test]
fn release_reports_a_takeover_and_changes_nothing() {
    let scratch = Scratch::new("native-release-lost");
    let locks = scratch.dir("locks");
    let stop = scratch.join("stop");
    let dir = LockDir::open(&locks).unwrap();
    let guard = dir
        .lock("shared")
        .holder("native-slow")
        .lease(Duration::from_millis(200))
        .lock()
        .unwrap();
    let mut taker = lockbydir(&locks)
        .args(["exec", "--quiet", "--holder", "exec-taker", "shared", "--"])
        .args(hold_until(&stop))
        .spawn()
        .unwrap();
    common::wait_until_held(&locks, "shared", "exec-taker", &mut taker);

    let err = guard.release().unwrap_err();
    assert!(
        matches!(&err, Error::Compromised { now_held_by: Some(h), .. } if h.label == "exec-taker"),
        "{err:?}"
    );
    assert!(err.to_string().contains("exec-taker"), "{err}");
    let o = output(lockbydir(&locks).args(["exec", "-n", "shared", "--", "true"]));
    assert_eq!(o.status.code(), Some(75), "{}", common::stderr(&o));

    std::fs::write(&stop, "").unwrap();
    assert!(taker.wait().unwrap().success());
}

#[test]
fn a_missing_lock_directory_is_a_typed_error_naming_it() {
    let scratch = Scratch::new("native-missing");
    let missing = scratch.join("nope");
    let err = LockDir::open(&missing).unwrap_err();
    assert_eq!(err.path, missing);
    assert_eq!(err.source.kind, lockbydir_protocol::FsErrorKind::NotFound);
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    std::fs::write(scratch.join("file"), "").unwrap();
    let err = LockDir::open(scratch.join("file")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    // create makes it; exec can use it at once.
    LockDir::create(&missing).unwrap();
    let o = output(lockbydir(&missing).args(["exec", "-n", "x", "--", "true"]));
    assert!(o.status.success(), "{}", common::stderr(&o));
    // A bad name is the protocol's typed error, before anything is touched.
    assert!(matches!(
        LockDir::open(&missing).unwrap().lock("a/b").try_lock(),
        Err(Error::InvalidName(_))
    ));
}

#[test]
fn keep_alive_holds_past_the_lease_against_exec() {
    let scratch = Scratch::new("native-keep");
    let locks = scratch.dir("locks");
    let dir = LockDir::open(&locks).unwrap();
    let lease = Duration::from_secs(1);
    let held = dir
        .lock("shared")
        .holder("native-kept")
        .lease(lease)
        .lock()
        .unwrap()
        .keep_alive();
    // For three leases, every `exec -n` finds the lock held by the native guard.
    let start = std::time::Instant::now();
    let mut tries = 0;
    while start.elapsed() < 3 * lease {
        let o = output(lockbydir(&locks).args(["exec", "-n", "shared", "--", "true"]));
        assert_eq!(o.status.code(), Some(75), "{}", common::stderr(&o));
        assert!(common::stderr(&o).contains("native-kept"));
        tries += 1;
    }
    assert!(tries > 0);
    held.check().unwrap();
    assert!(held.release().is_ok());
    let o = output(lockbydir(&locks).args(["exec", "-n", "shared", "--", "true"]));
    assert!(o.status.success(), "{}", common::stderr(&o));
}

#[test]
fn keep_alive_reports_a_lock_lost_meanwhile() {
    let scratch = Scratch::new("native-keep-lost");
    let locks = scratch.dir("locks");
    let dir = LockDir::open(&locks).unwrap();
    let held = dir
        .lock("shared")
        .lease(Duration::from_millis(300))
        .lock()
        .unwrap()
        .keep_alive();
    // Someone with direct access to the lock directory frees the lock under it (as
    // `rm -r` or a hand-made rename would).
    let lockdir = locks.join("shared.lockdir");
    let mut freed = false;
    for _ in 0..100 {
        let entry = std::fs::read_dir(&lockdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with("held"));
        // A refresh renaming the entry at this moment makes this rename miss: try again.
        if let Some(entry) = entry
            && std::fs::rename(
                lockdir.join(&entry),
                lockdir.join(format!("free.{}", held.fence())),
            )
            .is_ok()
        {
            freed = true;
            break;
        }
    }
    assert!(freed, "could not free the lock by hand");
    // The next refresh finds its entry gone.
    let mut failed = None;
    for _ in 0..1000 {
        if let Err(e) = held.check() {
            failed = Some(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let fence = held.fence();
    assert!(
        matches!(failed, Some(Error::Compromised { fence: f, .. }) if f == fence),
        "{failed:?}"
    );
    assert_eq!(held.deadline(), None);
    assert!(matches!(held.release(), Err(Error::Compromised { .. })));
    // Nothing was changed: the lock is free for the next one.
    let o = output(lockbydir(&locks).args(["exec", "-n", "shared", "--", "true"]));
    assert!(o.status.success(), "{}", common::stderr(&o));
}
