//! Lockdirs that are damaged, unreadable or not directories, through the real lock component:
//! each is reported at once as what it is (with its path and what to do), never waited on
//! until patience runs out, and never hides the other locks from `status`.

mod common;

use std::path::Path;

use common::{Scratch, lockbydir, output, stderr};

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
        assert_eq!(o.status.code(), Some(1), "`{name}`: {err}");
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
        assert_eq!(o.status.code(), Some(1), "{lock}: {err}");
        assert!(
            err.contains(&format!("{lock}.lockdir")) && err.contains(said),
            "{lock}: {err}"
        );
        assert!(!err.contains("kept failing"), "{lock}: {err}");
        assert!(!err.contains("ErrorCode"), "an internal dump: {err}");
    }
    std::fs::set_permissions(&denied, std::fs::Permissions::from_mode(0o755)).unwrap();
}
