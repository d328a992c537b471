//! The host's defences, each driven by the deliberately hostile plugin
//! (`example-plugins/src/bin/hostile.rs`): isolation, no forgery, per-plugin policy, limits,
//! cleanup after a plugin dies, and many instances.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Scratch, guest, lockbydir, output, status, stderr, stdout, wait_until_held};

/// `lockbydir run [flags] hostile.wasm -- args`, granting `work` as /work.
fn hostile(locks: &Path, work: &Path, flags: &[&str], args: &[&str]) -> Output {
    let mut cmd = lockbydir(locks);
    cmd.arg("run")
        .arg("--dir")
        .arg(format!("{}::/work", work.display()))
        .args(["--name", "hostile"])
        .args(flags)
        .arg(guest("hostile.wasm"))
        .arg("--")
        .args(args);
    output(&mut cmd)
}

/// True if lock `name` can be taken right now (one attempt).
fn free_now(locks: &Path, name: &str) -> bool {
    output(lockbydir(locks).args(["exec", "--patience", "0", name, "--", "true"]))
        .status
        .success()
}

#[test]
fn a_plugin_sees_only_what_was_granted() {
    let scratch = Scratch::new("hostile-escape");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let outside = scratch.dir("outside");
    let secret = outside.join("secret.txt");
    std::fs::write(&secret, "secret").unwrap();
    std::fs::write(work.join("ok.txt"), "fine").unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", work.join("relative-link")).unwrap();
    std::os::unix::fs::symlink(&secret, work.join("absolute-link")).unwrap();
    let attempts = [
        "/work/ok.txt".to_owned(),
        "/work/../outside/secret.txt".to_owned(),
        "../outside/secret.txt".to_owned(),
        secret.display().to_string(),
        "/work/relative-link".to_owned(),
        "/work/absolute-link".to_owned(),
        locks.display().to_string(),
        "/etc/passwd".to_owned(),
    ];
    let o = hostile(
        &locks,
        &work,
        &[],
        &["--try", "escape", "--path", &attempts.join(",")],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), attempts.len(), "{out}");
    // The control: what was granted is readable, so the denials below are real.
    assert!(
        lines[0].contains("read READ; write WRITTEN"),
        "{}",
        lines[0]
    );
    for line in &lines[1..] {
        assert!(
            line.contains("read denied")
                && line.contains("write denied")
                && line.contains("list denied"),
            "escaped the sandbox: {line}"
        );
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "secret");
    assert!(
        std::fs::read_dir(&locks).unwrap().next().is_none(),
        "the lock directory was touched"
    );
}

#[test]
fn a_plugin_cannot_release_refresh_or_take_a_lock_it_does_not_hold() {
    let scratch = Scratch::new("hostile-forge");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let mut owner = lockbydir(&locks)
        .args(["exec", "--holder", "owner", "target", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let before = wait_until_held(&locks, "target", "owner", &mut owner);
    let o = hostile(&locks, &work, &[], &["--try", "forge", "--lock", "target"]);
    let out = stdout(&o);
    let after = status(&locks)
        .into_iter()
        .find(|r| r["name"] == "target")
        .unwrap();
    let _ = owner.kill();
    let _ = owner.wait();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("release: not-held"), "{out}");
    assert!(out.contains("refresh: not-held"), "{out}");
    assert!(out.contains("try-acquire: busy (held by owner)"), "{out}");
    assert_eq!(out.matches(": invalid-name").count(), 5, "{out}");
    assert_eq!(after["holder"], "owner");
    assert_eq!(
        after["deadline_ms"], before["deadline_ms"],
        "the forger moved the deadline"
    );
    let names: Vec<_> = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["target.lockdir"],
        "nothing created outside the lockdir"
    );
}

#[test]
fn the_policy_limits_names_timeouts_and_how_many_locks_are_held() {
    let scratch = Scratch::new("hostile-policy");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let hoard = ["--try", "hoard", "--count", "5", "--timeout-ms", "5000"];

    let o = hostile(
        &locks,
        &work,
        &["--allow-lock", "hoard-*", "--max-locks", "2"],
        &hoard,
    );
    let out = stdout(&o);
    assert!(
        out.contains("hoard-0: acquired\nhoard-1: acquired\nhoard-2: denied\n"),
        "{out}"
    );
    assert!(
        stderr(&o)
            .contains("policy: refused plugin `hostile`: 2 lock(s) are already held; the cap is 2"),
        "{}",
        stderr(&o)
    );

    let o = hostile(&locks, &work, &["--allow-lock", "job-*"], &hoard);
    assert_eq!(stdout(&o), "hoard-0: denied\n");
    assert!(
        stderr(&o).contains("lock name `hoard-0` is not allowed (allowed: job-*)"),
        "{}",
        stderr(&o)
    );

    let o = hostile(&locks, &work, &["--max-timeout", "1s"], &hoard);
    assert_eq!(stdout(&o), "hoard-0: denied\n");
    assert!(
        stderr(&o).contains("timeout 5000 ms is above the cap of 1000 ms"),
        "{}",
        stderr(&o)
    );

    let o = hostile(
        &locks,
        &work,
        &["--max-handles", "3"],
        &["--try", "hoard", "--count", "5"],
    );
    assert!(stdout(&o).ends_with("hoard-3: denied\n"), "{}", stdout(&o));

    // The refused requests created nothing.
    let mut names: Vec<_> = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["hoard-0.lockdir", "hoard-1.lockdir", "hoard-2.lockdir"]
    );
}

#[test]
fn a_plugin_that_spins_holding_a_lock_is_stopped_at_its_deadline_and_the_lock_freed() {
    let scratch = Scratch::new("hostile-spin");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let o = hostile(
        &locks,
        &work,
        &["--deadline", "1s"],
        &["--try", "spin", "--lock", "spun"],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("plugin `hostile` was stopped: it exceeded its deadline (--deadline 1.0s)"),
        "{err}"
    );
    assert!(
        err.contains("ended while holding lock `spun`; released it"),
        "{err}"
    );
    assert!(
        free_now(&locks, "spun"),
        "the 60 s lock was not released at once"
    );
}

#[test]
fn a_plugin_that_hogs_memory_is_stopped_naming_the_limit_and_the_lock_freed() {
    let scratch = Scratch::new("hostile-hog");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let o = hostile(
        &locks,
        &work,
        &["--max-memory", "32M"],
        &["--try", "hog", "--lock", "hogged"],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("it exceeded its memory limit (--max-memory 33554432 bytes"),
        "{err}"
    );
    assert!(err.contains("released it"), "{err}");
    assert!(free_now(&locks, "hogged"));
}

#[test]
fn locks_of_a_plugin_that_traps_or_exits_are_released_at_once() {
    let scratch = Scratch::new("hostile-cleanup");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let o = hostile(&locks, &work, &[], &["--try", "trap", "--lock", "trapped"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("plugin `hostile` trapped"),
        "{}",
        stderr(&o)
    );
    assert!(free_now(&locks, "trapped"));
    let o = hostile(&locks, &work, &[], &["--try", "exit", "--lock", "exited"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit(3) is a failure (WASI 0.2 exit carries no code)"
    );
    assert!(
        stderr(&o).contains("ended while holding lock `exited`; released it"),
        "{}",
        stderr(&o)
    );
    assert!(free_now(&locks, "exited"));
}

#[test]
fn a_deadline_also_ends_a_wait_for_a_lock() {
    let scratch = Scratch::new("hostile-wait");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let mut owner = lockbydir(&locks)
        .args(["exec", "--holder", "owner", "busy", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    wait_until_held(&locks, "busy", "owner", &mut owner);
    let o = hostile(
        &locks,
        &work,
        // Long enough that starting the plugin on a loaded machine with a cold cache takes
        // a small part of it: what is checked is that the wait ends, not how fast.
        &["--deadline", "5s", "--quiet"],
        &["--try", "wait", "--lock", "busy"],
    );
    let owner_still_holds = owner.try_wait().unwrap().is_none();
    let _ = owner.kill();
    let _ = owner.wait();
    assert!(
        owner_still_holds,
        "the wait only ended because the owner went away"
    );
    // WASI 0.2 `exit` carries only success or failure, so the plugin's exit(4) arrives as 1.
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "wait: gave up\n");
}

#[test]
fn many_instances_run_side_by_side_and_a_failing_one_does_not_stop_the_others() {
    let scratch = Scratch::new("hostile-instances");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let o = hostile(
        &locks,
        &work,
        &["--instances", "3", "--quiet"],
        &["--try", "exit", "--lock", "shared"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("exited with 1").count(), 3, "{err}");
    assert_eq!(
        err.matches("ended while holding lock `shared`; released it")
            .count(),
        3,
        "{err}"
    );
    assert!(err.contains("3 instances: 0 succeeded, 3 failed"), "{err}");

    std::fs::write(work.join("counter"), "0").unwrap();
    let mut cmd = lockbydir(&locks);
    cmd.args(["run", "--quiet", "--instances", "6", "--dir"])
        .arg(format!("{}::/work", work.display()))
        .arg(guest("counter.wasm"))
        .args([
            "--",
            "--lock",
            "c",
            "--counter",
            "/work/counter",
            "--log",
            "/work/log",
            "--rounds",
            "5",
        ]);
    let o = output(&mut cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("6 instances: 6 succeeded, 0 failed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(common::count(&work.join("counter")), 30);
    common::assert_exclusive(&work.join("log"), 30);
}

#[test]
fn bad_run_flags_are_refused_with_a_reason() {
    let scratch = Scratch::new("hostile-flags");
    let locks = scratch.dir("locks");
    for (flags, expected) in [
        (vec!["--allow-lock", "a/b"], "invalid lock name pattern"),
        (vec!["--max-memory", "12X"], "unknown size unit"),
        (vec!["--deadline", "soon"], "invalid duration"),
        (vec!["--instances", "0"], "--instances must be at least 1"),
        (vec!["--dir", "::x"], "expected HOST or HOST::GUEST"),
        (vec!["--env", "NOVALUE"], "expected K=V"),
    ] {
        let mut cmd = lockbydir(&locks);
        cmd.arg("run").args(&flags).arg(guest("hostile.wasm"));
        let o = output(&mut cmd);
        assert!(!o.status.success(), "{flags:?} accepted");
        assert!(stderr(&o).contains(expected), "{flags:?}: {}", stderr(&o));
    }
}

// ---- policy (issue 12, items 3, 4, 6, 7): what a plugin may learn, print, create and see ----

#[test]
fn a_plugin_limited_to_some_names_learns_nothing_about_other_locks() {
    let scratch = Scratch::new("hostile-peek");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    // A lock it may see (the control: listing works), and one it may not, held by someone.
    assert!(free_now(&locks, "job-1"));
    let mut owner = lockbydir(&locks)
        .args([
            "exec",
            "--holder",
            "db-owner",
            "secret-db",
            "--",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    wait_until_held(&locks, "secret-db", "db-owner", &mut owner);
    let o = hostile(
        &locks,
        &work,
        &["--allow-lock", "job-*"],
        &["--try", "peek", "--lock", "job-1", "--secret", "secret-db"],
    );
    let _ = owner.kill();
    let _ = owner.wait();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("list: job-1 free (fence 1)"), "{out}");
    assert!(out.contains("inspect job-1: free (fence 1)"), "{out}");
    assert!(out.contains("inspect secret-db: denied"), "{out}");
    // Nor its queue: `queue` is refused as `open` is.
    assert!(out.contains("queue job-1: 0 waiting"), "{out}");
    assert!(out.contains("queue secret-db: denied"), "{out}");
    // Only the denials' own lines name the lock (the plugin asked for it by name).
    let denials = ["inspect secret-db: denied", "queue secret-db: denied"];
    let leaks: Vec<&str> = out
        .lines()
        .filter(|l| (l.contains("secret-db") && !denials.contains(l)) || l.contains("db-owner"))
        .collect();
    assert!(leaks.is_empty(), "leaked to the plugin: {leaks:?}\n{out}");
}

/// Output that a terminal would take for more than text: control characters other than the
/// line breaks lockbydir itself writes, or a line a label forged.
fn raw_control_or_forged_line(text: &str) -> Option<String> {
    if let Some(c) = text.chars().find(|&c| c.is_control() && c != '\n') {
        return Some(format!("raw control character {c:?}"));
    }
    text.lines()
        .find(|l| l.trim_start().starts_with("FAKE"))
        .map(|l| format!("forged line {l:?}"))
}

#[test]
fn a_hostile_holder_label_reaches_no_terminal_raw() {
    let scratch = Scratch::new("hostile-label");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let label = "\x1b[31mred\nFAKE: ok";
    let mut holder = lockbydir(&locks);
    holder
        .arg("run")
        .args(["--quiet", "--name", "labeller"])
        .arg(guest("hostile.wasm"))
        .args(["--", "--try", "hold", "--lock", "shown", "--label", label])
        .args(["--hold-ms", "60000"]);
    let mut holder = holder.spawn().unwrap();
    wait_until_held(&locks, "shown", label, &mut holder);

    // Another plugin waits for it (its wait notice names the holder), until its deadline.
    let waiter = hostile(
        &locks,
        &work,
        &["--deadline", "2s"],
        &["--try", "wait", "--lock", "shown"],
    );
    let status_text = output(lockbydir(&locks).arg("status"));
    let exec =
        output(lockbydir(&locks).args(["exec", "--patience", "300ms", "shown", "--", "true"]));
    let _ = holder.kill();
    let _ = holder.wait();

    let waiter_err = stderr(&waiter);
    assert!(
        waiter_err.contains("waiting for lock `shown` held by `\\u{1b}[31mred\\nFAKE: ok`"),
        "{waiter_err}"
    );
    let shown = stdout(&status_text);
    assert!(shown.contains("\\u{1b}[31mred\\nFAKE: ok"), "{shown}");
    assert_eq!(exec.status.code(), Some(75), "{}", stderr(&exec));
    // Its wait notice and its give-up line both name the holder, escaped.
    assert_eq!(
        stderr(&exec).matches("\\u{1b}[31mred\\nFAKE: ok").count(),
        2,
        "{}",
        stderr(&exec)
    );
    for (what, text) in [
        ("the waiting plugin's stderr", waiter_err),
        ("the waiting plugin's stdout", stdout(&waiter)),
        ("status", shown),
        ("status's stderr", stderr(&status_text)),
        ("exec's stderr", stderr(&exec)),
        ("exec's stdout", stdout(&exec)),
    ] {
        if let Some(bad) = raw_control_or_forged_line(&text) {
            panic!("{what}: {bad}:\n{text}");
        }
    }
}

#[test]
fn a_plugin_creates_at_most_its_cap_of_new_lockdirs() {
    let scratch = Scratch::new("hostile-churn");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let lockdirs = || {
        std::fs::read_dir(&locks)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".lockdir")
            })
            .count()
    };
    let limits = [
        "--allow-lock",
        "job-*",
        "--max-locks",
        "1",
        "--max-handles",
        "4",
    ];
    // The report's loop, under the default cap.
    let o = hostile(
        &locks,
        &work,
        &limits,
        &["--try", "churn", "--count", "1000"],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("job-64: denied\n"), "{out}");
    assert!(
        stderr(&o).contains("the cap is 64 new locks"),
        "{}",
        stderr(&o)
    );
    assert_eq!(lockdirs(), 64);

    // Lockdirs that exist already do not count: job-0..63 are reused, two more are made.
    let mut flags = limits.to_vec();
    flags.extend(["--max-new-locks", "2"]);
    let o = hostile(
        &locks,
        &work,
        &flags,
        &["--try", "churn", "--count", "1000"],
    );
    assert!(stdout(&o).contains("job-66: denied\n"), "{}", stdout(&o));
    assert_eq!(lockdirs(), 66);
}

#[test]
fn granting_the_lock_directory_to_a_plugin_is_refused_unless_trusted() {
    let scratch = Scratch::new("hostile-grant");
    let locks = scratch.dir("locks");
    let inside = scratch.dir("locks/inside");
    std::os::unix::fs::symlink(&locks, scratch.join("link")).unwrap();
    let resolved = std::fs::canonicalize(&locks).unwrap();
    let run = |dir: &str, extra: &[&str]| {
        let mut cmd = lockbydir(Path::new("."));
        cmd.current_dir(&locks)
            .args(["run", "--quiet", "--dir", dir])
            .args(extra)
            .arg(guest("hostile.wasm"))
            .args(["--", "--try", "escape", "--path", "/data"]);
        output(&mut cmd)
    };
    // `cd LOCKDIR && lockbydir run --dir .::/data`, the lock directory's symlink, a parent of
    // it, and a directory inside it.
    let link = format!("{}::/data", scratch.join("link").display());
    let parent = format!("{}::/data", scratch.0.display());
    let within = format!("{}::/data", inside.display());
    for grant in [".::/data", link.as_str(), parent.as_str(), within.as_str()] {
        let o = run(grant, &[]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{grant} was granted: {}", stdout(&o));
        assert!(err.contains("--trust-plugin-with-locks"), "{grant}: {err}");
        assert!(
            err.contains(&resolved.display().to_string()),
            "{grant}: {err}"
        );
        assert_eq!(stdout(&o), "", "{grant}: the plugin ran");
    }
    let o = run(".::/data", &["--trust-plugin-with-locks"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("/data: "), "{}", stdout(&o));
    assert!(stdout(&o).contains("list LISTED"), "{}", stdout(&o));
}

/// `lockbydir prune ARGS` in `locks`, which must succeed; its stdout.
fn prune(locks: &Path, args: &[&str]) -> String {
    let o = output(lockbydir(locks).arg("prune").args(args));
    assert!(o.status.success(), "prune {args:?}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn prune_removes_the_idle_lockdirs_a_plugin_left_and_keeps_held_and_queued_ones() {
    let scratch = Scratch::new("hostile-prune");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let o = hostile(
        &locks,
        &work,
        &["--allow-lock", "job-*"],
        &["--try", "churn", "--count", "64"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut holder = lockbydir(&locks)
        .args(["exec", "--holder", "keeper", "job-5", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    wait_until_held(&locks, "job-5", "keeper", &mut holder);
    let mut other = lockbydir(&locks)
        .args(["exec", "--holder", "other", "job-7", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    wait_until_held(&locks, "job-7", "other", &mut other);
    let mut waiter = lockbydir(&locks)
        .args([
            "exec", "--quiet", "--holder", "waiter", "job-7", "--", "true",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The waiter is in line once its ticket exists.
    let queue = locks.join("job-7.queue");
    for _ in 0..500 {
        if std::fs::read_dir(&queue).is_ok_and(|mut d| d.next().is_some()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let lockdirs = || {
        let mut names: Vec<String> = std::fs::read_dir(&locks)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".lockdir"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(lockdirs().len(), 64);

    let recent = prune(&locks, &["--older-than", "1h"]);
    assert!(
        recent.ends_with("removed 0 lockdir(s), kept 64\n"),
        "{recent}"
    );
    let dry = prune(&locks, &["--older-than", "0", "--dry-run"]);
    assert!(
        dry.ends_with("would remove 62 lockdir(s), kept 2\n"),
        "{dry}"
    );
    assert_eq!(lockdirs().len(), 64);
    let done = prune(&locks, &["--older-than", "0"]);
    let rows = status(&locks);
    let _ = holder.kill();
    let _ = other.kill();
    let _ = holder.wait();
    let _ = other.wait();
    let _ = waiter.kill();
    let _ = waiter.wait();
    assert!(done.contains("kept `job-5`: held\n"), "{done}");
    assert!(done.contains("kept `job-7`: held\n"), "{done}");
    assert!(done.ends_with("removed 62 lockdir(s), kept 2\n"), "{done}");
    assert_eq!(lockdirs(), ["job-5.lockdir", "job-7.lockdir"]);
    let held_by = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["holder"].clone())
    };
    assert_eq!(held_by("job-5"), Some("keeper".into()));
    assert_eq!(held_by("job-7"), Some("other".into()));
}

#[test]
fn pruning_while_processes_take_turns_never_lets_two_hold_the_lock() {
    let scratch = Scratch::new("hostile-prune-race");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let exe = env!("CARGO_BIN_EXE_lockbydir");
    let cache = common::cache_dir();
    let prunes = work.join("prunes");
    // Prune the lock over and over while three loops take turns on it; the loops go on until
    // the lock was pruned under them at least three times (and for 20 rounds at least).
    let pruner = format!(
        "while [ ! -e \"$1/stop\" ]; do \"{exe}\" --locks \"$0\" prune --older-than 0 >> \"$1/prunes\" || exit 1; done"
    );
    let mut pruner = std::process::Command::new("sh")
        .env("LOCKBYDIR_CACHE_DIR", &cache)
        .args(["-c", &pruner])
        .arg(&locks)
        .arg(&work)
        .spawn()
        .unwrap();
    let contender = |i: usize| {
        let script = format!(
            "i=0; while [ $i -lt 20 ] || [ $(cat \"$1/prunes\" 2>/dev/null | grep -c 'pruned `shared`') -lt 3 ]; do \
             [ $i -lt 3000 ] || exit 3; \
             \"{exe}\" --locks \"$0\" exec --quiet shared -- sh -c '{}' sh \"$1\" exec-{i} || exit 1; \
             i=$((i+1)); done",
            common::EXEC_INCREMENT
        );
        std::process::Command::new("sh")
            .env("LOCKBYDIR_CACHE_DIR", &cache)
            .args(["-c", &script])
            .arg(&locks)
            .arg(&work)
            .spawn()
            .unwrap()
    };
    let contenders: Vec<_> = (0..3).map(contender).collect();
    let ok = contenders
        .into_iter()
        .map(|mut c| c.wait().unwrap().code())
        .collect::<Vec<_>>();
    std::fs::write(work.join("stop"), "").unwrap();
    assert!(pruner.wait().unwrap().success(), "a prune failed");
    // 1: an exec failed (say, its lock was lost while it ran); 3: never pruned in 3000 rounds.
    assert_eq!(ok, [Some(0); 3], "a contender failed");
    let pruned = std::fs::read_to_string(&prunes)
        .unwrap()
        .matches("pruned `shared`")
        .count();
    assert!(pruned >= 3, "pruned {pruned} times");
    let log = std::fs::read_to_string(work.join("log")).unwrap();
    let holds = common::intervals::parse(&log, "").unwrap();
    let n = holds.len();
    common::intervals::check(holds).unwrap_or_else(|o| panic!("two holders at once: {o}"));
    assert_eq!(
        common::count(&work.join("counter")),
        n,
        "an increment was lost"
    );
}

// Limits (issue 12, items 1, 2, 5, 8, 9): everything a plugin makes the host hold counts
// against its limits, and reaching one never strands a lock.

/// Run to the end, capturing output, and return the child's peak resident memory (KiB) as
/// the kernel counted it (`wait4`'s `ru_maxrss`).
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, not Child::wait"
)]
fn output_and_peak_rss(cmd: &mut std::process::Command) -> (Output, u64) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        err.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let stderr = errors.join().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and both pointers live through the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 failed");
    let status = std::process::ExitStatus::from_raw(status);
    (
        Output {
            status,
            stdout,
            stderr,
        },
        usage.ru_maxrss as u64,
    )
}

/// The `hostile` command line, for callers that run it themselves.
fn hostile_cmd(locks: &Path, work: &Path, flags: &[&str], args: &[&str]) -> std::process::Command {
    let mut cmd = lockbydir(locks);
    cmd.arg("run")
        .arg("--dir")
        .arg(format!("{}::/work", work.display()))
        .args(["--name", "hostile"])
        .args(flags)
        .arg(guest("hostile.wasm"))
        .arg("--")
        .args(args);
    cmd
}

#[test]
fn long_holder_labels_are_cut_when_opened_so_the_host_does_not_hold_them() {
    let scratch = Scratch::new("hostile-labels");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    // 256 handles with 1 MiB labels: 256 MiB if anyone kept the whole labels.
    let (o, peak_kib) = output_and_peak_rss(&mut hostile_cmd(
        &locks,
        &work,
        &["--max-memory", "16M", "--quiet"],
        &[
            "--try",
            "handles",
            "--count",
            "256",
            "--label-bytes",
            "1048576",
        ],
    ));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "opened 256\n");
    assert!(
        peak_kib < 200 * 1024,
        "the host grew to {} MiB for a plugin limited to 16 MiB",
        peak_kib / 1024
    );
}

#[test]
fn a_lock_component_that_runs_out_of_memory_still_has_the_plugins_locks_freed_at_once() {
    let scratch = Scratch::new("hostile-exhaust");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    // The plugin holds `stuck` (for a minute), takes all the memory its limit leaves, then
    // opens handles until the lock component, which shares that limit, cannot grow.
    let o = hostile(
        &locks,
        &work,
        &["--max-memory", "16M", "--max-handles", "1000000", "--quiet"],
        &["--try", "handles", "--hold", "stuck", "--fill", "1"],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{out}{err}");
    assert!(out.contains("took stuck\nfilled: "), "{out}{err}");
    assert!(
        err.contains(
            "plugin `hostile` was stopped: it exceeded its memory limit (--max-memory 16777216 bytes"
        ),
        "{err}"
    );
    assert!(
        err.contains("ended while holding lock `stuck`; released it"),
        "{err}"
    );
    assert!(free_now(&locks, "stuck"), "the lock was stranded: {err}");
}

#[test]
fn max_handles_is_honoured_above_wasmtimes_default_and_a_held_lock_is_never_stranded() {
    let scratch = Scratch::new("hostile-handles");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    // wasmtime caps a store at 100,000 live handles unless told otherwise.
    let o = hostile(
        &locks,
        &work,
        &["--max-handles", "150000", "--quiet"],
        &["--try", "handles", "--hold", "stuck", "--count", "150001"],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}{err}");
    // One handle holds `stuck`; the cap counts it.
    assert!(
        out.ends_with("open 149999: denied\nopened 149999\n"),
        "{out}{err}"
    );
    assert!(
        err.contains("ended while holding lock `stuck`; released it"),
        "{err}"
    );
    assert!(free_now(&locks, "stuck"), "the lock was stranded: {err}");

    // A value that cannot be honoured is refused up front, saying what can be.
    let o = hostile(
        &locks,
        &work,
        &["--max-handles", "2000000"],
        &["--try", "stdin"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--max-handles 2000000 is more than can be honoured (at most 1000000)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_lock_wait_ends_before_the_deadline_however_long_ago_the_handle_was_opened() {
    let scratch = Scratch::new("hostile-late-wait");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let mut owner = lockbydir(&locks)
        .args(["exec", "--holder", "owner", "busy", "--", "sleep", "60"])
        .spawn()
        .unwrap();
    wait_until_held(&locks, "busy", "owner", &mut owner);
    // The handle is opened at once, the wait starts after half the deadline: capped at
    // open, the wait would run on past the deadline and the plugin be stopped mid-wait.
    let o = hostile(
        &locks,
        &work,
        &["--deadline", "8s", "--quiet"],
        &["--try", "spin-wait", "--lock", "busy", "--spin-ms", "4000"],
    );
    let owner_still_holds = owner.try_wait().unwrap().is_none();
    let _ = owner.kill();
    let _ = owner.wait();
    assert!(
        owner_still_holds,
        "the wait only ended because the owner went away"
    );
    let (out, err) = (stdout(&o), stderr(&o));
    // The plugin saw its wait end (and could still say so) before the deadline stopped it.
    assert_eq!(out, "waiting\nwait: gave up\n", "{err}");
    assert!(!err.contains("was stopped"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
}

#[test]
fn a_plugin_gets_no_stdin_unless_it_is_passed_on() {
    use std::io::Write;
    use std::process::Stdio;
    let scratch = Scratch::new("hostile-stdin");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let typed = b"typed for something else\n";
    for (flags, expected) in [
        (&[][..], "stdin: 0 bytes\n".to_owned()),
        (&["--stdin"][..], format!("stdin: {} bytes\n", typed.len())),
    ] {
        let mut child = hostile_cmd(&locks, &work, flags, &["--try", "stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(typed).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{flags:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), expected, "{flags:?}");
    }
}

#[test]
fn run_help_names_every_limit_with_its_default() {
    let scratch = Scratch::new("hostile-help");
    let o = output(lockbydir(&scratch.0).args(["run", "--help"]));
    let help = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    for flag in [
        "--allow-lock",
        "--max-timeout",
        "--max-locks",
        "--max-handles",
        "--deadline",
        "--max-memory",
        "--stdin",
        "--instances",
    ] {
        // The flag's entry: from its line to the next flag's.
        let start = help
            .find(&format!("      {flag} "))
            .or_else(|| help.find(&format!("      {flag}\n")))
            .unwrap_or_else(|| panic!("{flag} missing from:\n{help}"));
        let entry = &help[start..];
        let end = entry[6..].find("\n  -").map_or(entry.len(), |i| i + 6);
        assert!(
            entry[..end].contains("[default: "),
            "{flag} does not say its default:\n{}",
            &entry[..end]
        );
    }
}
