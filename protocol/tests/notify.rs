//! The native API's wake-ups on Linux (`lockbydir_protocol::notify::NotifyEnv`): a sleep on an
//! entry ends when that entry is renamed away or removed, not when another one changes, and
//! at once when it is already gone. Sleeps here are ten minutes long: only a wake-up ends
//! them within the test's lifetime, so no time is asserted.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use lockbydir_protocol::notify::NotifyEnv;
use lockbydir_protocol::{Env, StdEnv};

const TEN_MINUTES_US: u64 = 600_000_000;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lockbydir-notify-{name}-{}-{:x}",
        std::process::id(),
        StdEnv::new().random_u64()
    ));
    std::fs::create_dir_all(dir.join("bed.lockdir")).unwrap();
    dir
}

/// Sleep on `entry` on another thread; the receiver says when the sleep ended.
fn sleeper(root: &std::path::Path, entry: &str) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let env = NotifyEnv::new(root);
    let entry = entry.to_owned();
    std::thread::spawn(move || {
        env.sleep_until_changed(&entry, TEN_MINUTES_US);
        let _ = tx.send(());
    });
    rx
}

#[test]
fn a_sleep_ends_when_its_entry_is_renamed_or_removed_and_not_before() {
    let root = scratch("wake");
    let held = root.join("bed.lockdir/held.1");
    let other = root.join("bed.lockdir/other");
    std::fs::create_dir(&held).unwrap();
    std::fs::create_dir(&other).unwrap();
    let woken = sleeper(&root, "bed.lockdir/held.1");
    // Another entry of the same directory changing does not end it.
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_dir(&other).unwrap();
    assert!(
        woken.recv_timeout(Duration::from_millis(200)).is_err(),
        "woken by another entry's change"
    );
    std::fs::rename(&held, root.join("bed.lockdir/free.1")).unwrap();
    woken.recv().unwrap();
    // Removal wakes too.
    let woken = sleeper(&root, "bed.lockdir/free.1");
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_dir(root.join("bed.lockdir/free.1")).unwrap();
    woken.recv().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_sleep_on_an_entry_already_gone_ends_at_once() {
    let root = scratch("gone");
    sleeper(&root, "bed.lockdir/held.7").recv().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn one_environment_sleeps_again_and_again_and_only_its_current_entry_wakes_it() {
    let root = scratch("again");
    for name in ["x", "y"] {
        std::fs::create_dir(root.join("bed.lockdir").join(name)).unwrap();
    }
    let env = NotifyEnv::new(&root);
    // A sleep that ends by its time leaves its entry unwatched: x changing afterwards (its
    // old watch's leftovers still queued) must not end the next sleep, on y.
    env.sleep_until_changed("bed.lockdir/x", 1_000);
    std::fs::rename(root.join("bed.lockdir/x"), root.join("bed.lockdir/x2")).unwrap();
    let (tx, rx) = mpsc::channel();
    let sleeping = std::thread::spawn(move || {
        env.sleep_until_changed("bed.lockdir/y", TEN_MINUTES_US);
        let _ = tx.send(());
        // And once more, on the renamed x: its removal ends it.
        env.sleep_until_changed("bed.lockdir/x2", TEN_MINUTES_US);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "woken by an earlier watch's leftovers"
    );
    std::fs::rename(root.join("bed.lockdir/y"), root.join("bed.lockdir/y2")).unwrap();
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_dir(root.join("bed.lockdir/x2")).unwrap();
    sleeping.join().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}
