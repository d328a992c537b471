//! Lockdirs that are damaged, unreadable or not directories, through the real lock component:
//! each is reported at once as what it is (with its path and what to do), never waited on
//! until patience runs out, and never hides the other locks from `status`.

mod common;

use std::path::Path;

use common::{Scratch, lockbydir, output, status, stderr, stdout};

/// `exec` on lock `name` with a long patience: the outcome must come from what the lockdir
/// holds, not from patience running out.
fn exec(locks: &Path, name: &str) -> std::process::Output {
    output(lockbydir(locks).args(["exec", "--quiet", "--patience", "1m", name, "--", "true"]))
}

#[test]
fn a_lockdir_with_only_foreign_or_non_canonical_names_is_corrupt_not_busy() {
    let scratch = Scratch::new("broken-corrupt");
    let locks = scratch.dir("locks");
    for (lock, name) in [
        ("ds", ".DS_Store"),
        ("big", "free.18446744073709551616"),
        (
            "upper",
            "held.3.1700000000000.1700000030000.30000.00000000DEADBEEF.x",
        ),
        (
            "pct",
            "held.3.1700000000000.1700000030000.30000.00000000deadbeef.%78",
        ),
        (
            "never",
            "held.3.1700000000000.18446744073709551615.30000.00000000deadbeef.x",
        ),
    ] {
        std::fs::create_dir_all(locks.join(format!("{lock}.lockdir/{name}"))).unwrap();
        let o = exec(&locks, lock);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(65), "`{name}`: {err}");
        assert!(!err.contains("gave up"), "`{name}` was waited on: {err}");
        assert!(
            err.contains(&format!("{lock}.lockdir")) && err.contains(name),
            "`{name}`: {err}"
        );
        assert!(err.contains("lockbydir repair"), "no way out named: {err}");
    }
}

#[test]
fn unreadable_lockdirs_report_what_the_filesystem_said() {
    let scratch = Scratch::new("broken-fs");
    let locks = scratch.dir("locks");
    std::fs::write(locks.join("file.lockdir"), "").unwrap();
    std::os::unix::fs::symlink("loop.lockdir", locks.join("loop.lockdir")).unwrap();
    let mut cases = vec![
        ("file", "Not a directory"),
        ("loop", "Too many levels of symbolic links"),
    ];
    let denied = locks.join("denied.lockdir");
    std::fs::create_dir_all(denied.join("free.0")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&denied, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read_dir(&denied).is_ok() {
        eprintln!("skipped: EACCES (this process bypasses permissions, as root does)");
    } else {
        cases.push(("denied", "Permission denied"));
    }
    for (lock, said) in cases {
        let o = exec(&locks, lock);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(74), "{lock}: {err}");
        assert!(
            err.contains(&format!("{lock}.lockdir")) && err.contains(said),
            "{lock}: {err}"
        );
        assert!(!err.contains("kept failing"), "{lock}: {err}");
        assert!(!err.contains("ErrorCode"), "an internal dump: {err}");
    }
    std::fs::set_permissions(&denied, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn status_lists_every_lock_and_shows_a_broken_one_as_broken_with_why() {
    let scratch = Scratch::new("broken-status");
    let locks = scratch.dir("locks");
    std::fs::create_dir_all(locks.join("a.lockdir/free.1")).unwrap();
    std::fs::create_dir_all(locks.join("b.lockdir/.DS_Store")).unwrap();
    std::fs::write(locks.join("c.lockdir"), "").unwrap();
    // Past its deadline, but written just now by the filesystem's clock, with an hour's
    // timeout: nobody can take it over for an hour, so it is not `expired`.
    std::fs::create_dir_all(locks.join("d.lockdir/held.2.1000.2000.3600000.00000000deadbeef.old"))
        .unwrap();
    let rows = status(&locks);
    let states: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("a", "free"),
            ("b", "broken"),
            ("c", "broken"),
            ("d", "held")
        ]
    );
    let why = |i: usize| rows[i]["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        why(1).contains(".DS_Store") && why(1).contains("lockbydir repair b"),
        "{}",
        why(1)
    );
    assert!(why(2).contains("Not a directory"), "{}", why(2));
    assert!(rows[0]["error"].is_null(), "{}", rows[0]);
    let table = stdout(&output(lockbydir(&locks).arg("status")));
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {table}"))
            .to_owned()
    };
    assert!(
        line("b ").contains("broken") && line("b ").contains(".DS_Store"),
        "{table}"
    );
    assert!(line("d ").contains(" held "), "{table}");
}

#[test]
fn status_never_wraps_a_deadline() {
    let scratch = Scratch::new("broken-wrap");
    let locks = scratch.dir("locks");
    // The latest deadline an entry may record (the end of year 9999), and one no clock reaches.
    std::fs::create_dir_all(
        locks.join("far.lockdir/held.1.1000.253402300799999.3600000.00000000deadbeef.x"),
    )
    .unwrap();
    std::fs::create_dir_all(
        locks.join("max.lockdir/held.1.1000.18446744073709551615.3600000.00000000deadbeef.x"),
    )
    .unwrap();
    let rows = status(&locks);
    assert_eq!(rows[0]["state"], "held", "{}", rows[0]);
    assert!(
        rows[0]["expires_in_ms"].as_i64().unwrap() > 0,
        "{}",
        rows[0]
    );
    assert_eq!(rows[1]["state"], "broken", "{}", rows[1]);
    let table = stdout(&output(lockbydir(&locks).arg("status")));
    assert!(!table.contains(" ago"), "{table}");
}

#[test]
fn repair_makes_a_corrupt_lock_usable_again_and_keeps_its_fence() {
    let scratch = Scratch::new("broken-repair");
    let locks = scratch.dir("locks");
    std::fs::create_dir_all(locks.join("bed.lockdir/held.41.1000.2000.1.00000000DEADBEEF.x"))
        .unwrap();
    std::fs::write(locks.join("bed.lockdir/.DS_Store"), "").unwrap();
    // Refused while the lockdir changed within the entry's timeout (1 ms, on a filesystem
    // clock that may tick coarsely): try until that has passed.
    let mut o = output(lockbydir(&locks).args(["repair", "bed"]));
    for _ in 0..100 {
        if !stderr(&o).contains("may still be alive") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        o = output(lockbydir(&locks).args(["repair", "bed"]));
    }
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("next holder gets fence 43"),
        "{}",
        stdout(&o)
    );
    let o =
        output(lockbydir(&locks).args(["exec", "bed", "--", "sh", "-c", "echo $LOCKBYDIR_FENCE"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "43");
    // Nothing left to repair.
    let o = output(lockbydir(&locks).args(["repair", "bed"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not corrupt"), "{}", stderr(&o));
}
