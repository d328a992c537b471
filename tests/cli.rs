//! The `lockbydir` binary as users run it: several processes on one lock directory, a holder
//! killed with SIGKILL, `exec`, `status`, `component`, `demo`, and bad input.

mod common;

use std::process::{Command, Stdio};

use common::{
    Scratch, guest, lockbydir, now_ms, output, shipped_lock_component, status, stderr, stdout,
    wait_until_held,
};

#[test]
fn plugin_and_exec_processes_take_turns_on_one_lock() {
    let scratch = Scratch::new("cli-processes");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    common::hammer_with_processes(&locks, &work, 15);
}

#[test]
fn a_holder_killed_with_sigkill_blocks_others_until_its_timeout_and_no_longer() {
    let scratch = Scratch::new("cli-crash");
    let locks = scratch.dir("locks");
    let pidfile = scratch.join("sleep.pid");
    let mut holder = lockbydir(&locks)
        .args([
            "exec", "--lease", "3s", "--holder", "victim", "bed", "--", "sh", "-c",
        ])
        .arg("echo $$ > \"$0\"; exec sleep 60")
        .arg(&pidfile)
        .spawn()
        .unwrap();
    wait_until_held(&locks, "bed", "victim", &mut holder);
    holder.kill().unwrap(); // SIGKILL: no release, no more refreshes
    holder.wait().unwrap();
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    let row = status(&locks)
        .into_iter()
        .find(|r| r["name"] == "bed")
        .unwrap();
    let deadline = row["deadline_ms"].as_u64().unwrap();
    assert_eq!(row["holder"], "victim");

    // Not at all before the deadline: one attempt now must find it busy.
    let o = output(lockbydir(&locks).args(["exec", "--patience", "0", "bed", "--", "true"]));
    let tried_by = now_ms();
    if tried_by < deadline {
        assert_eq!(
            o.status.code(),
            Some(75),
            "took a crashed holder's lock early: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("held by `victim`"), "{}", stderr(&o));
    } else {
        eprintln!(
            "skipped the early attempt check: this machine was too slow to try before the deadline"
        );
    }

    // A patient waiter gets it once the stored timeout has passed, and not much later.
    let o = output(lockbydir(&locks).args([
        "exec",
        "--patience",
        "60s",
        "bed",
        "--",
        "sh",
        "-c",
        "date +%s%3N",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let acquired_at: u64 = stdout(&o).trim().parse().unwrap();
    assert!(
        acquired_at > deadline,
        "acquired at {acquired_at}, before the deadline {deadline}"
    );
    assert!(
        acquired_at < deadline + 10_000,
        "acquired at {acquired_at}, long after the deadline {deadline}: waiters do not notice expiry"
    );
    assert!(
        stderr(&o).contains("took over lock `bed` from `victim`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn exec_passes_exit_codes_and_fences_and_waits_with_one_message() {
    let scratch = Scratch::new("cli-exec");
    let locks = scratch.dir("locks");
    let o = output(lockbydir(&locks).args([
        "exec",
        "job",
        "--",
        "sh",
        "-c",
        "echo $LOCKBYDIR_LOCK $LOCKBYDIR_FENCE; exit 7",
    ]));
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(stdout(&o).trim(), "job 1");
    let o =
        output(lockbydir(&locks).args(["exec", "job", "--", "sh", "-c", "echo $LOCKBYDIR_FENCE"]));
    assert_eq!(stdout(&o).trim(), "2", "fences grow across processes");

    // Hold it, then wait for it with limited patience: one "blocking" line, then exit 75.
    let mut holder = lockbydir(&locks)
        .args(["exec", "--holder", "the-holder", "job", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    wait_until_held(&locks, "job", "the-holder", &mut holder);
    let o = output(lockbydir(&locks).args(["exec", "--patience", "600ms", "job", "--", "true"]));
    let err = stderr(&o);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert_eq!(
        err.matches("blocking waiting for lock `job` held by `the-holder`")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("gave up waiting for lock `job`") && err.contains("`the-holder`"),
        "{err}"
    );

    let o = output(lockbydir(&locks).args(["exec", "other", "--", "/nonexistent/cmd"]));
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = output(lockbydir(&locks).args(["exec", "--patience", "0", "other", "--", "true"]));
    assert!(
        o.status.success(),
        "a failed spawn must not leave the lock held: {}",
        stderr(&o)
    );
}

#[test]
fn status_lists_every_lock_as_a_table_and_as_json() {
    let scratch = Scratch::new("cli-status");
    let locks = scratch.dir("locks");
    let o = output(lockbydir(&locks).arg("status"));
    assert!(stdout(&o).starts_with("no locks in"), "{}", stdout(&o));
    assert!(
        output(lockbydir(&locks).args(["exec", "alpha", "--", "true"]))
            .status
            .success()
    );
    let mut holder = lockbydir(&locks)
        .args([
            "exec", "--lease", "1m", "--holder", "busy bee", "beta", "--", "sleep", "30",
        ])
        .spawn()
        .unwrap();
    let beta = wait_until_held(&locks, "beta", "busy bee", &mut holder);
    let table = stdout(&output(lockbydir(&locks).arg("status")));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(beta["fence"], 1);
    assert_eq!(beta["timeout_ms"], 60_000);
    let rows = status(&locks);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "alpha");
    assert_eq!(rows[0]["state"], "free");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(
        lines[1].starts_with("alpha") && lines[1].contains("free"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("beta") && lines[2].contains("held") && lines[2].ends_with("busy bee"),
        "{table}"
    );
}

#[test]
fn component_hands_out_the_lock_component_and_its_wit() {
    let scratch = Scratch::new("cli-component");
    let out = scratch.join("lock.wasm");
    let o = output(
        lockbydir(&scratch.0)
            .args(["component", "--out"])
            .arg(&out)
            .arg("--wit"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(shipped_lock_component()).unwrap()
    );
    assert!(stdout(&o).contains("package lockbydir:lock@0.2.0;"));
    // The written component works as --lock-component.
    let locks = scratch.dir("locks");
    let o = output(
        lockbydir(&locks)
            .arg("--lock-component")
            .arg(&out)
            .args(["exec", "x", "--", "true"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_demo_runs_and_finds_no_overlap() {
    let scratch = Scratch::new("cli-demo");
    let o = output(lockbydir(&scratch.0).args(["demo", "--hammer", "40"]));
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert_eq!(out.matches("no two overlapped").count(), 2, "{out}");
    assert!(out.contains("counter = 44 (expected 44)"), "{out}");
}

/// README's command for the demo, `cargo run --release -- demo`, picks the `lockbydir` binary
/// although the workspace's default members have other binaries (the embedding examples).
/// Run here with `--version` instead of `demo` (the test above runs the demo itself).
#[test]
fn readmes_run_command_runs_the_lockbydir_binary() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let readme = std::fs::read_to_string(workspace.join("README.md")).unwrap();
    assert!(
        readme
            .lines()
            .any(|line| line == "cargo run --release -- demo"),
        "README no longer shows `cargo run --release -- demo` on a line of its own"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut run = Command::new(cargo);
    run.current_dir(workspace)
        .args(["run", "--release", "--quiet"]);
    if std::env::var_os("CARGO_NET_OFFLINE").is_some() {
        run.arg("--offline");
    }
    run.args(["--", "--version"]);
    let o = output(&mut run);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("lockbydir "), "{}", stdout(&o));
}

/// Bad input: a clear message, a nonzero exit, and nothing created anywhere.
fn assert_refused(scratch: &Scratch, cmd: &mut Command, expected: &str) {
    let before = scratch.tree();
    let o = output(cmd.current_dir(&scratch.0));
    let err = stderr(&o);
    assert!(!o.status.success(), "accepted: {cmd:?}");
    assert!(
        err.contains(expected),
        "{cmd:?}: expected {expected:?} in:\n{err}"
    );
    assert_eq!(
        scratch.tree(),
        before,
        "{cmd:?} created or removed something"
    );
}

#[test]
fn invalid_lock_names_are_refused() {
    let scratch = Scratch::new("cli-names");
    let locks = scratch.dir("locks");
    // A LOCK with a `/` is DIR/NAME (as flock's file is): its NAME is checked the same way.
    for name in [
        "",
        "..",
        ".",
        "a\\b",
        &"n".repeat(201),
        "locks/..",
        "locks/",
    ] {
        assert_refused(
            &scratch,
            lockbydir(&locks).args(["exec", name, "--", "true"]),
            "invalid lock name",
        );
    }
    assert_refused(
        &scratch,
        lockbydir(&locks).args(["exec", "absent/x", "--", "true"]),
        "absent",
    );
}

#[test]
fn unusable_lock_directories_are_refused() {
    let scratch = Scratch::new("cli-lockdirs");
    assert_refused(
        &scratch,
        lockbydir(&scratch.join("missing")).args(["exec", "x", "--", "true"]),
        "missing",
    );
    std::fs::write(scratch.join("file"), "").unwrap();
    assert_refused(
        &scratch,
        lockbydir(&scratch.join("file")).args(["exec", "x", "--", "true"]),
        "not a directory",
    );

    let ro = scratch.dir("readonly");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "skipped the read-only lock directory check: cannot mount a read-only tmpfs here (not root?)"
        );
        return;
    }
    let o = output(lockbydir(&ro).args(["exec", "x", "--", "true"]));
    // A plugin gets the lock component's own words, which do not claim EIO either.
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let plugin = output(
        lockbydir(&ro)
            .args(["run", "--dir"])
            .arg(format!("{}::/work", work.display()))
            .arg(guest("counter.wasm"))
            .args([
                "--",
                "--lock",
                "x",
                "--counter",
                "/work/counter",
                "--log",
                "/work/log",
            ]),
    );
    let _ = Command::new("umount").arg(&ro).status();
    let said = stderr(&plugin);
    assert_eq!(plugin.status.code(), Some(1), "{said}");
    assert!(
        said.contains("create-dir") && !said.contains("(EIO)"),
        "{said}"
    );
    let err = stderr(&o);
    // The errno the filesystem gave (EROFS), not the catch-all WASI turned it into (EIO).
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(
        err.contains("create-dir") && err.contains(&ro.display().to_string()),
        "{err}"
    );
    assert!(err.contains("Read-only file system (EROFS)"), "{err}");
    assert!(!err.contains("EIO"), "{err}");
}

#[test]
fn files_that_are_not_usable_plugins_are_refused() {
    let scratch = Scratch::new("cli-plugins");
    let locks = scratch.dir("locks");
    let text = scratch.join("text.wasm");
    std::fs::write(&text, "hello").unwrap();
    assert_refused(
        &scratch,
        lockbydir(&locks).arg("run").arg(&text),
        "not a WebAssembly file",
    );
    let module = scratch.join("module.wasm");
    std::fs::write(&module, wat::parse_str("(module)").unwrap()).unwrap();
    assert_refused(
        &scratch,
        lockbydir(&locks).arg("run").arg(&module),
        "a core WebAssembly module, not a component",
    );
    assert_refused(
        &scratch,
        lockbydir(&locks)
            .arg("run")
            .arg(scratch.join("absent.wasm")),
        "cannot read it",
    );
    let foreign = scratch.join("foreign.wasm");
    let component =
        r#"(component (import "acme:secrets/vault@1.0.0" (instance (export "open" (func)))))"#;
    std::fs::write(&foreign, wat::parse_str(component).unwrap()).unwrap();
    assert_refused(
        &scratch,
        lockbydir(&locks).arg("run").arg(&foreign),
        "acme:secrets/vault@1.0.0",
    );
    let o = output(lockbydir(&locks).arg("run").arg(&foreign));
    assert!(
        stderr(&o).contains("it provides WASI 0.2 and lockbydir:lock/lock"),
        "{}",
        stderr(&o)
    );
    // A component that imports nothing foreign but is no command.
    let lib = shipped_lock_component();
    assert_refused(
        &scratch,
        lockbydir(&locks).arg("run").arg(&lib),
        "is not a wasi:cli/command component",
    );
}

#[test]
fn exec_refuses_a_lock_whose_fences_are_exhausted_and_renames_nothing() {
    let scratch = Scratch::new("cli-fences");
    let locks = scratch.dir("locks");
    let last = format!("free.{}", u64::MAX);
    std::fs::create_dir_all(locks.join("bed.lockdir").join(&last)).unwrap();
    let ran = scratch.join("ran");
    let o = output(
        lockbydir(&locks)
            .args(["exec", "--patience", "2s", "bed", "--", "touch"])
            .arg(&ran),
    );
    assert!(!o.status.success(), "exec granted an exhausted lock");
    assert!(!ran.exists(), "the command ran without the lock");
    let err = stderr(&o);
    assert!(
        err.contains("last fencing token") && err.contains("bed.lockdir"),
        "{err}"
    );
    let mut entries: Vec<String> = std::fs::read_dir(locks.join("bed.lockdir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, [last]);
}

/// Every subcommand's help, and the top level's, as `--help` prints it.
fn helps(scratch: &Scratch) -> Vec<(String, String)> {
    let top = stdout(&output(lockbydir(&scratch.0).arg("--help")));
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 8, "{top}");
    let mut out = vec![("lockbydir".to_owned(), top)];
    for c in commands {
        let help = stdout(&output(lockbydir(&scratch.0).args([&c, "--help"])));
        out.push((c, help));
    }
    out
}

#[test]
fn help_says_what_lockbydir_does_in_words_a_user_knows() {
    let scratch = Scratch::new("cli-help-words");
    for (command, help) in helps(&scratch) {
        assert!(
            !help.to_lowercase().contains("seed"),
            "`{command} --help` speaks of a seed users never saw:\n{help}"
        );
    }
}

#[test]
fn developer_options_are_listed_once_and_work_after_any_subcommand() {
    let scratch = Scratch::new("cli-developer-options");
    let locks = scratch.dir("locks");
    for (command, help) in helps(&scratch) {
        let listed = help.contains("--no-cache") && help.contains("--lock-component");
        match command.as_str() {
            "lockbydir" => assert!(listed, "{help}"),
            _ => assert!(
                !help.contains("--no-cache") && !help.contains("--lock-component"),
                "`{command} --help` lists the developer options:\n{help}"
            ),
        }
    }
    // Still accepted before and after the subcommand.
    let component = scratch.join("lock.wasm");
    let o = output(
        lockbydir(&locks)
            .args(["component", "--out"])
            .arg(&component),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [
        &["--no-cache", "exec", "job", "--", "true"][..],
        &["exec", "--no-cache", "job", "--", "true"],
        &["status", "--no-cache"],
    ] {
        let o = output(lockbydir(&locks).args(args));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let o = output(
        lockbydir(&locks)
            .args(["exec", "--lock-component"])
            .arg(&component)
            .args(["job", "--", "true"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = output(
        lockbydir(&locks)
            .args(["exec", "--lock-component"])
            .arg(scratch.join("absent.wasm"))
            .args(["job", "--", "true"]),
    );
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
}

#[test]
fn a_trapping_plugin_has_its_own_exit_code_and_a_readable_backtrace() {
    let scratch = Scratch::new("cli-trap");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let run = |flags: &[&str]| {
        output(
            lockbydir(&locks)
                .arg("run")
                .args(flags)
                .arg("--dir")
                .arg(format!("{}::/work", work.display()))
                .args(["--name", "hostile"])
                .arg(guest("hostile.wasm"))
                .args(["--", "--try", "trap", "--lock", "trapped"]),
        )
    };
    for flags in [&[][..], &["--instances", "2"]] {
        let o = run(flags);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(134), "{flags:?}: {err}");
        assert!(
            err.contains("trapped: wasm `unreachable` instruction executed"),
            "{flags:?}: {err}"
        );
        assert!(
            !err.contains("\\n"),
            "{flags:?}: a backtrace on one line:\n{err}"
        );
        let frames = err
            .lines()
            .filter(|l| {
                l.trim_start()
                    .split_once(": ")
                    .is_some_and(|(i, rest)| i.parse::<u32>().is_ok() && rest.contains('!'))
            })
            .count();
        assert!(frames >= 2, "{flags:?}: no frame per line:\n{err}");
    }
    let help = stdout(&output(lockbydir(&locks).args(["run", "--help"])));
    assert!(help.contains("Exit codes:"), "{help}");
    let line = |code: &str| {
        help.lines()
            .find(|l| l.trim_start().starts_with(code))
            .unwrap_or_else(|| panic!("run --help does not document {code}:\n{help}"))
            .to_owned()
    };
    assert!(line("134").contains("trapped"), "{help}");
    assert!(!line("69").contains("trap"), "{help}");
}

#[test]
fn an_explicit_lock_directory_and_a_lock_path_naming_another_are_refused() {
    let scratch = Scratch::new("cli-locks-and-path");
    let locks = scratch.dir("locks");
    let other = scratch.dir("other");
    let path = format!("{}/job", other.display());
    assert_refused(
        &scratch,
        lockbydir(&locks).args(["exec", &path, "--", "true"]),
        "--locks",
    );
    let o = output(lockbydir(&locks).args(["exec", &path, "--", "true"]));
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    // The same directory both ways is no contradiction.
    let same = format!("{}/job", locks.display());
    let o = output(lockbydir(&locks).args(["exec", &same, "--", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(locks.join("job.lockdir").is_dir());
    // LOCKBYDIR_DIR is a default: a path given for the lock names its own directory.
    let o = output(
        Command::new(env!("CARGO_BIN_EXE_lockbydir"))
            .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
            .env("LOCKBYDIR_DIR", &locks)
            .args(["exec", &path, "--", "true"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(other.join("job.lockdir").is_dir());
}

#[test]
fn a_lock_directory_given_beside_a_backend_that_keeps_none_is_refused() {
    let scratch = Scratch::new("cli-locks-etcd");
    let locks = scratch.dir("locks");
    for args in [
        &["exec", "--backend", "etcd", "job", "--", "true"][..],
        &["status", "--backend", "etcd"][..],
    ] {
        let o = output(lockbydir(&locks).args(args));
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("--locks names a lock directory, but --backend etcd"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // Without --locks, the backend is what decides (here: it is missing, or etcd is down).
    let o = output(
        Command::new(env!("CARGO_BIN_EXE_lockbydir"))
            .env("LOCKBYDIR_CACHE_DIR", common::cache_dir())
            .env("LOCKBYDIR_DIR", &locks)
            .args([
                "status",
                "--backend",
                "etcd",
                "--etcd-endpoints",
                "http://127.0.0.1:9",
            ]),
    );
    assert!(!stderr(&o).contains("--locks names"), "{}", stderr(&o));
}
