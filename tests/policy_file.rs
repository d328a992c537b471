//! `lockbydir run --policy FILE`: a plugin's limits and lock patterns from a TOML file,
//! enforced exactly as the same flags are, overridden by flags, and refused with the file,
//! line and key named when wrong. Driven by the hostile plugin, as `tests/hostile.rs` is.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Scratch, guest, lockbydir, output, stderr, stdout};

/// `lockbydir run [flags] hostile.wasm -- args`, granting `work` as /work.
fn hostile(locks: &Path, work: &Path, flags: &[&str], args: &[&str]) -> Output {
    let mut cmd = lockbydir(locks);
    cmd.arg("run")
        .arg("--dir")
        .arg(format!("{}::/work", work.display()))
        .args(["--name", "hostile", "--quiet"])
        .args(flags)
        .arg(guest("hostile.wasm"))
        .arg("--")
        .args(args);
    output(&mut cmd)
}

/// A policy file in `scratch` holding `text`.
fn policy(scratch: &Scratch, name: &str, text: &str) -> PathBuf {
    let path = scratch.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The lockdirs in `locks`, sorted.
fn lockdirs(locks: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(locks)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_policy_file_is_enforced_exactly_like_the_flags() {
    let scratch = Scratch::new("policy-file-same");
    let hoard = ["--try", "hoard", "--count", "5", "--timeout-ms", "5000"];
    let churn = ["--try", "churn", "--count", "1000"];
    // (flags, the same as a file, the plugin's arguments, what shows the limit was applied)
    let cases: [(&[&str], &str, &[&str], &str); 8] = [
        (
            &["--allow-lock", "hoard-*", "--max-locks", "2"],
            "allow-lock = [\"hoard-*\"]\nmax-locks = 2\n",
            &hoard,
            "2 lock(s) are already held; the cap is 2",
        ),
        (
            &["--allow-lock", "job-*", "--allow-lock", "other"],
            "allow-lock = [\"job-*\", \"other\"]\n",
            &hoard,
            "lock name `hoard-0` is not allowed (allowed: job-*, other)",
        ),
        (
            &["--max-timeout", "1s"],
            "max-timeout = \"1s\"\n",
            &hoard,
            "timeout 5000 ms is above the cap of 1000 ms",
        ),
        (
            &["--max-handles", "3"],
            "max-handles = 3\n",
            &["--try", "hoard", "--count", "5"],
            "3 lock handles are open; the cap is 3",
        ),
        (
            &[
                "--max-new-locks",
                "2",
                "--allow-lock",
                "job-*",
                "--max-locks",
                "1",
            ],
            "max-new-locks = 2\nallow-lock = [\"job-*\"]\nmax-locks = 1\n",
            &churn,
            "the cap is 2 new locks",
        ),
        (
            &["--deadline", "1s"],
            "deadline = \"1s\"\n",
            &["--try", "spin", "--lock", "spun"],
            "it exceeded its deadline (--deadline 1.0s)",
        ),
        (
            &["--max-memory", "32M"],
            "max-memory = \"32M\"\n",
            &["--try", "hog", "--lock", "hogged"],
            "it exceeded its memory limit (--max-memory 33554432 bytes",
        ),
        // A bare number is seconds for a duration and bytes for a size, as for the flags.
        (
            &["--max-timeout", "2", "--max-memory", "33554432"],
            "max-timeout = 2\nmax-memory = 33554432\n",
            &hoard,
            "timeout 5000 ms is above the cap of 2000 ms",
        ),
    ];
    for (i, (flags, text, args, applied)) in cases.into_iter().enumerate() {
        let work = scratch.dir(&format!("work-{i}"));
        let by_flags = scratch.dir(&format!("flags-{i}"));
        let by_file = scratch.dir(&format!("file-{i}"));
        let file = policy(&scratch, &format!("policy-{i}.toml"), text);
        let f = hostile(&by_flags, &work, flags, args);
        let p = hostile(&by_file, &work, &["--policy", file.to_str().unwrap()], args);
        let (f_err, p_err) = (stderr(&f), stderr(&p));
        assert!(f_err.contains(applied), "{flags:?}: {f_err}");
        assert!(p_err.contains(applied), "{text:?}: {p_err}");
        assert_eq!(f.status.code(), p.status.code(), "{text:?}: {p_err}");
        assert_eq!(stdout(&f), stdout(&p), "{text:?}: {p_err}");
        assert_eq!(lockdirs(&by_flags), lockdirs(&by_file), "{text:?}");
    }
}

/// The policy file docs/untrusted-plugins.md shows (`examples/policy/worker.toml`) is accepted
/// and applied: a lock name outside its `allow-lock` list is denied naming the list.
#[test]
fn the_documented_policy_file_is_applied() {
    let scratch = Scratch::new("policy-file-documented");
    let (locks, work) = (scratch.dir("locks"), scratch.dir("work"));
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy/worker.toml");
    let o = hostile(
        &locks,
        &work,
        &["--policy", file.to_str().unwrap()],
        &["--try", "hoard", "--count", "1"],
    );
    let err = stderr(&o);
    assert!(
        err.contains("lock name `hoard-0` is not allowed (allowed: job-*, shared.db)"),
        "{err}"
    );
}

#[test]
fn flags_override_the_policy_file_and_allow_lock_replaces_its_list() {
    let scratch = Scratch::new("policy-file-override");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let file = policy(
        &scratch,
        "policy.toml",
        "allow-lock = [\"job-*\"]\nmax-locks = 1\nmax-timeout = \"1s\"\n",
    );
    let file = file.to_str().unwrap();
    let hoard = ["--try", "hoard", "--count", "5", "--timeout-ms", "5000"];

    // The control: the file alone refuses the names and the timeout.
    let o = hostile(&locks, &work, &["--policy", file], &hoard);
    assert_eq!(stdout(&o), "hoard-0: denied\n", "{}", stderr(&o));

    // --allow-lock replaces the file's list (job-* is not kept alongside), and --max-timeout
    // the file's cap; the file's max-locks still applies.
    let o = hostile(
        &locks,
        &work,
        &[
            "--policy",
            file,
            "--allow-lock",
            "hoard-*",
            "--max-timeout",
            "10s",
        ],
        &hoard,
    );
    assert_eq!(
        stdout(&o),
        "hoard-0: acquired\nhoard-1: denied\n",
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("1 lock(s) are already held; the cap is 1"),
        "{}",
        stderr(&o)
    );

    // Flags can narrow too: the file allows hoard-*, the command line only hoard-0.
    let wide = policy(&scratch, "wide.toml", "allow-lock = [\"hoard-*\"]\n");
    let o = hostile(
        &locks,
        &work,
        &[
            "--policy",
            wide.to_str().unwrap(),
            "--allow-lock",
            "hoard-0",
            "--max-locks",
            "3",
        ],
        &hoard,
    );
    assert_eq!(
        stdout(&o),
        "hoard-0: acquired\nhoard-1: denied\n",
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("lock name `hoard-1` is not allowed (allowed: hoard-0)"),
        "{}",
        stderr(&o)
    );

    // A count from the command line overrides the file's.
    let o = hostile(
        &locks,
        &work,
        &[
            "--policy",
            file,
            "--allow-lock",
            "hoard-*",
            "--max-timeout",
            "10s",
            "--max-locks",
            "3",
        ],
        &hoard,
    );
    assert_eq!(
        stdout(&o),
        "hoard-0: acquired\nhoard-1: acquired\nhoard-2: acquired\nhoard-3: denied\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_wrong_policy_file_is_refused_naming_file_line_and_key_before_the_plugin_runs() {
    let scratch = Scratch::new("policy-file-bad");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    for (text, expected) in [
        (
            "max-locks = 2\ninstances = 4\n",
            "line 2: unknown field `instances`, expected one of `allow-lock`",
        ),
        (
            "# limits\nmax-memory = \"12X\"\n",
            "line 2: max-memory: invalid size \"12X\"",
        ),
        (
            "deadline = \"soon\"\n",
            "line 1: deadline: invalid duration \"soon\"",
        ),
        (
            "max-locks = \"two\"\n",
            "line 1: max-locks: expected a whole number like 16, found a string",
        ),
        (
            "allow-lock = [\"a/b\"]\n",
            "line 1: allow-lock: invalid lock name pattern \"a/b\"",
        ),
        (
            "allow-lock = []\n",
            "line 1: allow-lock: an empty list would allow every lock name",
        ),
        ("max-locks = 1\nmax-locks = 2\n", "line 2: duplicate key"),
        ("max-locks = \n", "line 1: "),
    ] {
        let file = policy(&scratch, "bad.toml", text);
        let o = hostile(
            &locks,
            &work,
            &["--policy", file.to_str().unwrap()],
            &["--try", "hoard", "--count", "1"],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(64), "{text:?}: {err}");
        assert!(
            err.contains(&format!("policy file {}, {expected}", file.display())),
            "{text:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{text:?}: {err}");
        assert_eq!(stdout(&o), "", "the plugin ran: {text:?}");
    }
    assert!(lockdirs(&locks).is_empty(), "{:?}", lockdirs(&locks));
}

#[test]
fn a_missing_policy_file_is_named() {
    let scratch = Scratch::new("policy-file-missing");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let missing = scratch.join("no-such-policy.toml");
    let o = hostile(
        &locks,
        &work,
        &["--policy", missing.to_str().unwrap()],
        &["--try", "hoard", "--count", "1"],
    );
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "policy file {} cannot be read: No such file or directory",
            missing.display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");

    // `run --help` names the flag.
    let o = output(lockbydir(&locks).args(["run", "--help"]));
    assert!(stdout(&o).contains("--policy <FILE>"), "{}", stdout(&o));
}
