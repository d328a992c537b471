//! `lockbydir exec` as a flock(1) user runs it: killed, interrupted while waiting, under
//! `nohup`, in two directories, with flock's flags, and failing for its own reasons.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Scratch, cache_dir, default_signals, lockbydir, output, stderr, stdout, wait_until_held,
};

/// Poll `cond` every 20 ms for up to `secs` seconds.
fn poll(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The pid a command wrote into `file`, once it has.
fn read_pid(file: &Path, child: &mut Child) -> u32 {
    let mut pid = None;
    assert!(
        poll(60, || {
            pid = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pid.is_some() || child.try_wait().unwrap().is_some()
        }),
        "{} never appeared",
        file.display()
    );
    pid.unwrap_or_else(|| {
        panic!(
            "lockbydir exited before the command wrote {}",
            file.display()
        )
    })
}

fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
}

/// `lockbydir` with neither `--locks` nor `LOCKBYDIR_DIR`: the default lock directory, placed
/// under `tmp` (through TMPDIR).
fn lockbydir_default(tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockbydir"));
    cmd.env("LOCKBYDIR_CACHE_DIR", cache_dir())
        .env_remove("LOCKBYDIR_DIR")
        .env("TMPDIR", tmp);
    cmd
}

/// The default lock directory under `tmp`, as lockbydir names it.
fn default_dir(tmp: &Path) -> PathBuf {
    // SAFETY: getuid(2) cannot fail.
    tmp.join(format!("lockbydir-{}", unsafe { libc::getuid() }))
}

fn tickets(locks: &Path, name: &str) -> Vec<String> {
    match std::fs::read_dir(locks.join(format!("{name}.queue"))) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("wait."))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A holder of lock `name` that runs `sleep 60` until killed.
fn hold(locks: &Path, name: &str, label: &str) -> Child {
    let mut holder = lockbydir(locks)
        .args(["exec", "--holder", label, name, "--", "sleep", "60"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_held(locks, name, label, &mut holder);
    holder
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) has no memory-safety preconditions; it may have exited already.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
}

#[test]
fn sigkill_of_lockbydir_stops_the_command_it_runs() {
    let scratch = Scratch::new("exec-sigkill");
    let locks = scratch.dir("locks");
    let pidfile = scratch.join("pid");
    let mut holder = lockbydir(&locks)
        .args(["exec", "--holder", "victim", "job", "--"])
        .args(["sh", "-c", "echo $$ > \"$0\"; exec sleep 60"])
        .arg(&pidfile)
        .spawn()
        .unwrap();
    let pid = read_pid(&pidfile, &mut holder);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let gone = poll(30, || !alive(pid));
    if !gone {
        kill(pid, libc::SIGKILL);
    }
    assert!(
        gone,
        "the command (pid {pid}) runs on after its lockbydir was killed"
    );
}

#[test]
fn background_processes_a_command_leaves_are_stopped_when_its_lock_is_released() {
    let scratch = Scratch::new("exec-leftover");
    let locks = scratch.dir("locks");
    let pidfile = scratch.join("pid");
    let o = output(
        lockbydir(&locks)
            .args(["exec", "job", "--", "sh", "-c"])
            .arg("sleep 60 > /dev/null 2>&1 & echo $! > \"$0\"")
            .arg(&pidfile),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = poll(30, || !alive(pid));
    if !gone {
        kill(pid, libc::SIGKILL);
    }
    assert!(
        gone,
        "the command's background child {pid} runs on unlocked"
    );
}

#[test]
fn a_waiter_ended_by_a_signal_withdraws_its_ticket_and_exits_128_plus_the_signal() {
    let scratch = Scratch::new("exec-interrupt");
    let locks = scratch.dir("locks");
    let holder = hold(&locks, "job", "the-holder");
    for (signal, code) in [
        (libc::SIGTERM, 143),
        (libc::SIGINT, 130),
        (libc::SIGHUP, 129),
    ] {
        let waiter = default_signals(&mut lockbydir(&locks))
            .args(["exec", "job", "--", "true"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            poll(60, || !tickets(&locks, "job").is_empty()),
            "the waiter never queued"
        );
        kill(waiter.id(), signal);
        let o = waiter.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(code),
            "signal {signal}: {}",
            stderr(&o)
        );
        assert_eq!(
            tickets(&locks, "job"),
            Vec::<String>::new(),
            "signal {signal} left the waiter's ticket behind"
        );
    }
    // The next waiter gets the lock once the holder lets go.
    stop(holder);
    let o = output(lockbydir(&locks).args(["exec", "-w", "60s", "job", "--", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_signal_ignored_at_start_stays_ignored_as_under_nohup() {
    let scratch = Scratch::new("exec-nohup");
    let locks = scratch.dir("locks");
    let ready = scratch.join("ready");
    let mut cmd = lockbydir(&locks);
    cmd.args(["exec", "job", "--", "sh", "-c", "touch \"$0\"; sleep 2"])
        .arg(&ready)
        .stderr(Stdio::piped());
    // SAFETY: signal(2) is async-signal-safe; this is what nohup(1) does before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    assert!(poll(60, || ready.exists()), "the command never started");
    kill(child.id(), libc::SIGHUP);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn the_same_bare_name_in_two_directories_is_one_lock() {
    let scratch = Scratch::new("exec-two-dirs");
    let tmp = scratch.dir("tmp");
    let a = scratch.dir("a");
    let b = scratch.dir("b");
    let started = scratch.join("started");
    let mut first = lockbydir_default(&tmp)
        .current_dir(&a)
        .args([
            "exec",
            "nightly",
            "--",
            "sh",
            "-c",
            "touch \"$0\"; sleep 60",
        ])
        .arg(&started)
        .spawn()
        .unwrap();
    assert!(
        poll(60, || started.exists()
            || first.try_wait().unwrap().is_some()),
        "the first never started"
    );
    let o = output(lockbydir_default(&tmp).current_dir(&b).args([
        "exec",
        "--patience",
        "0",
        "nightly",
        "--",
        "true",
    ]));
    stop(first);
    assert_eq!(
        o.status.code(),
        Some(75),
        "a second `exec nightly` in another directory got the lock: {}",
        stderr(&o)
    );
    let dir = default_dir(&tmp);
    assert!(dir.join("nightly.lockdir").is_dir());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
}

#[test]
fn a_path_names_the_lock_directory_and_the_lock() {
    let scratch = Scratch::new("exec-path");
    let locks = scratch.dir("locks");
    let o = output(
        lockbydir_default(&scratch.dir("tmp"))
            .current_dir(&scratch.0)
            .args(["exec", "locks/nightly", "--", "sh", "-c"])
            .arg("echo \"$LOCKBYDIR_DIR $LOCKBYDIR_LOCK\""),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("{} nightly", locks.display()),
        "{}",
        stderr(&o)
    );
    assert!(locks.join("nightly.lockdir").is_dir());
}

#[test]
fn an_unsafe_default_lock_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("exec-unsafe-default");
    let tmp = scratch.dir("tmp");
    let dir = default_dir(&tmp);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = output(lockbydir_default(&tmp).args(["exec", "job", "--", "true"]));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("writable by others") && stderr(&o).contains("--locks"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("job.lockdir").exists());

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Owned by someone else: only root can set that up.
    if std::os::unix::fs::chown(&dir, Some(65534), None).is_err() {
        eprintln!("skipped the foreign owner check: cannot chown here (not root?)");
        return;
    }
    let o = output(lockbydir_default(&tmp).args(["exec", "job", "--", "true"]));
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).contains("owned by"), "{}", stderr(&o));
}

#[test]
fn flock_flags_nonblock_wait_conflict_exit_code_and_command_string() {
    let scratch = Scratch::new("exec-flock");
    let locks = scratch.dir("locks");
    let holder = hold(&locks, "job", "the-holder");
    for args in [
        &["-n"][..],
        &["--nonblock"],
        &["-w", "300ms"],
        &["--wait", "0"],
        &["-x", "-n"],
    ] {
        let o = output(
            lockbydir(&locks)
                .arg("exec")
                .args(args)
                .args(["job", "--", "true"]),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(75), "{args:?}: {err}");
        assert!(!err.contains("as a value"), "{args:?}: {err}");
        assert!(err.contains("`the-holder`"), "{args:?}: {err}");
    }
    let o = output(lockbydir(&locks).args(["exec", "-n", "-E", "3", "job", "--", "true"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = output(lockbydir(&locks).args([
        "exec",
        "-n",
        "--conflict-exit-code",
        "9",
        "job",
        "--",
        "true",
    ]));
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    stop(holder);

    let o = output(lockbydir(&locks).args([
        "exec",
        "job",
        "-c",
        "echo fence=$LOCKBYDIR_FENCE; exit 4",
    ]));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("fence="), "{}", stdout(&o));

    let o = output(lockbydir(&locks).args(["exec", "--verbose", "job", "--", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("acquired lock `job`") && stderr(&o).contains(" after "),
        "{}",
        stderr(&o)
    );

    // The lease has its own name; the status shows it.
    let mut long = lockbydir(&locks)
        .args([
            "exec", "--lease", "1m", "--holder", "leased", "job", "--", "sleep", "60",
        ])
        .spawn()
        .unwrap();
    let row = wait_until_held(&locks, "job", "leased", &mut long);
    stop(long);
    assert_eq!(row["timeout_ms"], 60_000);
}

#[test]
fn flags_that_a_flock_user_would_misread_fail_loudly() {
    let scratch = Scratch::new("exec-misread");
    let locks = scratch.dir("locks");
    for args in [
        &["--timeout", "1", "job", "--", "true"][..],
        &["-n", "-w", "1s", "job", "--", "true"],
        &["job", "-c", "true", "--", "true"],
        &["job"],
    ] {
        let o = output(lockbydir(&locks).arg("exec").args(args));
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        if args[0] == "--timeout" {
            assert!(
                stderr(&o).contains("--lease") && stderr(&o).contains("--wait"),
                "{}",
                stderr(&o)
            );
        }
    }
    // flock's flags that lockbydir has no use for: refused saying what lockbydir does
    // instead, not with clap's "to pass '-s' as a value".
    for (flag, says) in [
        ("-s", "exclusive"),
        ("--shared", "exclusive"),
        ("-o", "process group"),
        ("--close", "process group"),
        ("-u", "releases"),
        ("--unlock", "releases"),
        ("-F", "parent"),
        ("--no-fork", "parent"),
        ("--fcntl", "directories"),
    ] {
        let o = output(lockbydir(&locks).args(["exec", flag, "job", "--", "true"]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(64), "{flag}: {err}");
        assert!(!err.contains("as a value"), "{flag}: {err}");
        assert!(
            err.contains(flag) && err.contains("flock's") && err.contains(says),
            "{flag}: {err}"
        );
    }
    assert!(!locks.join("job.lockdir").exists());
}

#[test]
fn a_command_given_without_dashes_gets_a_hint_with_the_dashes() {
    let scratch = Scratch::new("exec-dashes");
    let locks = scratch.dir("locks");
    for (args, fixed) in [
        (&["exec", "job", "echo", "hi"][..], "exec job -- echo hi"),
        (
            &["exec", "-w", "1s", "job", "ls", "-l"],
            "exec -w 1s job -- ls -l",
        ),
        (&["exec", "echo", "echo", "a b"], "exec echo -- echo 'a b'"),
        (
            &["run", "p.wasm", "--rounds", "1"],
            "run p.wasm -- --rounds 1",
        ),
    ] {
        let o = output(lockbydir(&locks).args(args));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains(fixed) && err.contains("after `--`"),
            "{args:?}: expected {fixed:?} in:\n{err}"
        );
    }
    assert!(!locks.join("job.lockdir").exists());
}

#[test]
fn only_the_default_lock_directory_is_created() {
    let scratch = Scratch::new("exec-created");
    let tmp = scratch.dir("tmp");
    // --locks DIR and LOCKBYDIR_DIR must exist: 66, and nothing is made.
    let missing = scratch.join("missing");
    let o = output(lockbydir(&missing).args(["exec", "job", "--", "true"]));
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    let o = output(
        lockbydir_default(&tmp)
            .env("LOCKBYDIR_DIR", &missing)
            .args(["exec", "job", "--", "true"]),
    );
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(!missing.exists());
    // The default one is made, mode 0700, but not its parent.
    let o = output(lockbydir_default(&scratch.join("no-tmp")).args(["exec", "job", "--", "true"]));
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(!scratch.join("no-tmp").exists());
    let o = output(lockbydir_default(&tmp).args(["exec", "job", "--", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(default_dir(&tmp).join("job.lockdir").is_dir());
}

#[test]
fn lockbydirs_own_failures_have_their_own_exit_codes() {
    let scratch = Scratch::new("exec-codes");
    let locks = scratch.dir("locks");
    // A missing lock directory: 66 (EX_NOINPUT), with no internals in the message.
    let o = output(lockbydir(&scratch.join("missing")).args(["exec", "job", "--", "true"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(66), "{err}");
    assert!(err.contains("missing") && !err.contains('{'), "{err}");
    // A file where the lock directory should be (ENOTDIR): 66 too.
    std::fs::write(scratch.join("file"), "").unwrap();
    let o = output(lockbydir(&scratch.join("file")).args(["exec", "job", "--", "true"]));
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    // A bad lock name: 64 (EX_USAGE).
    let o = output(lockbydir(&locks).args(["exec", "..", "--", "true"]));
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid lock name"), "{}", stderr(&o));
    // The command's own code passes through, and so does "not found".
    let o = output(lockbydir(&locks).args(["exec", "job", "--", "sh", "-c", "exit 1"]));
    assert_eq!(o.status.code(), Some(1));
    let o = output(lockbydir(&locks).args(["exec", "job", "--", "/nonexistent/cmd"]));
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    // Every code is documented.
    let help = stdout(&output(lockbydir(&locks).args(["exec", "--help"])));
    for code in [
        "64", "66", "69", "70", "74", "75", "77", "126", "127", "128+",
    ] {
        assert!(
            help.contains(code),
            "exec --help does not document {code}:\n{help}"
        );
    }
}

#[test]
fn the_wait_line_names_the_holder_and_directory_and_the_label_hides_arguments() {
    let scratch = Scratch::new("exec-messages");
    let locks = scratch.dir("locks");
    let mut holder = lockbydir(&locks)
        .args([
            "exec",
            "job",
            "--",
            "sh",
            "-c",
            "sleep 60",
            "secret-argument",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let label = lockbydir_cli::holder_label::label(
        "sh",
        holder.id(),
        &lockbydir_cli::holder_label::this_host(),
    );
    let row = wait_until_held(&locks, "job", &label, &mut holder);
    assert!(!row["holder"].as_str().unwrap().contains("secret"));
    let o = output(lockbydir(&locks).args(["exec", "-w", "200ms", "job", "--", "true"]));
    let err = stderr(&o);
    stop(holder);
    assert_eq!(
        err.matches("blocking waiting for lock `job`").count(),
        1,
        "{err}"
    );
    assert!(err.contains(&format!("held by `{label}`")), "{err}");
    assert!(err.contains(&locks.display().to_string()), "{err}");
    assert!(!err.contains("unless refreshed"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}
