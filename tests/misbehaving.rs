//! Real processes misbehaving: holders SIGKILLed at random points of acquisition and release,
//! and a holder SIGSTOPped past its deadline that resumes to find it lost the lock.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    EXEC_INCREMENT, Scratch, assert_exclusive, lockbydir, output, status, stderr, stdout,
    wait_until_held,
};

/// A small deterministic generator, seeded per run (the seed is printed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {pid} failed");
}

#[test]
fn holders_killed_at_random_points_never_overlap_and_never_block_past_their_timeout() {
    const ROUNDS: usize = 40;
    let seed = common::now_ms() | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let scratch = Scratch::new("kill-random");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    std::fs::write(work.join("log"), "").unwrap();
    let mut killed = 0;
    for round in 0..ROUNDS {
        // Two contenders at once; one of them is killed after a random delay, anywhere from
        // before it opened the lock to after it released it.
        let spawn = |label: String| {
            lockbydir(&locks)
                .args([
                    "exec", "--quiet", "--lease", "1s", "--holder", &label, "bed", "--",
                ])
                .args(["sh", "-c", EXEC_INCREMENT, "sh"])
                .arg(&work)
                .arg(&label)
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut victim = spawn(format!("victim-{round}"));
        let mut survivor = spawn(format!("survivor-{round}"));
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        if victim.try_wait().unwrap().is_none() {
            victim.kill().unwrap();
            killed += 1;
        }
        victim.wait().unwrap();
        // The survivor must get the lock: at worst after the victim's timeout.
        let done = survivor.wait().unwrap();
        assert!(
            done.success(),
            "round {round}: the survivor failed ({done})"
        );
    }
    // A killed holder's command dies with it, anywhere in its read-modify-write (even between
    // truncating the counter and writing it), so the counter proves nothing here: the log of
    // complete holds does.
    let holds = std::fs::read_to_string(work.join("log"))
        .unwrap()
        .lines()
        .count();
    assert!(holds >= ROUNDS, "every survivor logged its hold");
    assert_exclusive(&work.join("log"), holds);
    eprintln!("{ROUNDS} rounds, {killed} holders killed, {holds} holds recorded");
    // Nothing is left that blocks anyone beyond a timeout.
    let o = output(lockbydir(&locks).args(["exec", "--patience", "2s", "bed", "--", "true"]));
    assert!(
        o.status.success(),
        "the lock stayed blocked: {}",
        stderr(&o)
    );
}

#[test]
fn a_holder_stopped_past_its_deadline_learns_it_was_compromised_and_its_fence_is_older() {
    let scratch = Scratch::new("sigstop");
    let locks = scratch.dir("locks");
    let fence_file = scratch.join("first-fence");
    let mut sleepy = lockbydir(&locks)
        .args([
            "exec", "--lease", "1s", "--holder", "sleepy", "bed", "--", "sh", "-c",
        ])
        .arg("echo $LOCKBYDIR_FENCE > \"$0\"; sleep 4")
        .arg(&fence_file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_held(&locks, "bed", "sleepy", &mut sleepy);
    signal(sleepy.id(), "STOP");

    // Someone else gets the lock once the stopped holder's deadline has passed.
    let mut thief = lockbydir(&locks)
        .args([
            "exec",
            "--patience",
            "20s",
            "--holder",
            "thief",
            "bed",
            "--",
            "sh",
            "-c",
        ])
        .arg("echo $LOCKBYDIR_FENCE; sleep 2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_held(&locks, "bed", "thief", &mut thief);
    signal(sleepy.id(), "CONT");

    let sleepy = sleepy.wait_with_output().unwrap();
    let thief = thief.wait_with_output().unwrap();
    let sleepy_err = stderr(&sleepy);
    assert_eq!(
        sleepy.status.code(),
        Some(70),
        "a compromised exec must fail: {sleepy_err}"
    );
    assert!(
        sleepy_err.contains("compromised") && sleepy_err.contains("`thief`"),
        "{sleepy_err}"
    );
    assert!(
        thief.status.success(),
        "the thief's hold was disturbed: {}",
        stderr(&thief)
    );
    assert!(
        stderr(&thief).contains("took over lock `bed` from `sleepy`"),
        "{}",
        stderr(&thief)
    );
    let first: u64 = std::fs::read_to_string(&fence_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let second: u64 = stdout(&thief).trim().parse().unwrap();
    assert!(second > first, "fences: sleepy {first}, thief {second}");
    // The resumed holder changed nothing: the thief released normally, keeping its fence.
    let row = status(&locks)
        .into_iter()
        .find(|r| r["name"] == "bed")
        .unwrap();
    assert_eq!(row["state"], "free");
    assert_eq!(row["fence"], second);
}

#[test]
fn a_terminated_exec_passes_the_signal_on_and_releases_the_lock_at_once() {
    let scratch = Scratch::new("sigterm");
    let locks = scratch.dir("locks");
    let mut holder = lockbydir(&locks)
        .args([
            "exec", "--lease", "60s", "--holder", "patient", "bed", "--", "sleep", "30",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_held(&locks, "bed", "patient", &mut holder);
    signal(holder.id(), "TERM");
    let o = holder.wait_with_output().unwrap();
    // The command was terminated by the passed-on signal: 128 + 15.
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("passed signal 15 on to the command"),
        "{}",
        stderr(&o)
    );
    let row = status(&locks)
        .into_iter()
        .find(|r| r["name"] == "bed")
        .unwrap();
    assert_eq!(row["state"], "free", "the 60 s lock was left to expire");
}
