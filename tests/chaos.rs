//! The chaos hammer: many real processes on one lock, tiny timeouts, and chaos threads that
//! SIGSTOP, SIGCONT and SIGKILL them at random, on the test's scratch directory and (as
//! root) on tmpfs. It keeps the record that no two *confirmed* holders ever overlapped and that
//! no fence was handed out twice.
//!
//! Contenders: 12 threads looping `lockbydir exec --lease <5-200ms> --patience <...> chaos --
//! bash -c '...'` and 4 looping `lockbydir run sleeper.wasm` (the lock component inside a
//! plugin host), all on lock `chaos`; half the runs, picked at random, with
//! `LOCKBYDIR_NO_WAKEUPS=1` (they poll, as on a host without wake-ups), so waiters that are
//! woken and waiters that poll share one line. Each `exec`'d command logs, from bash's `$EPOCHREALTIME`
//! (CLOCK_REALTIME in µs, read without forking; `date +%s%N` costs a fork and exec, about
//! 4 ms here), a start line with its `LOCKBYDIR_FENCE` as soon as it runs and an end line when
//! its work (a random sleep, often longer than the timeout, so refreshes matter) is done. The
//! sleeper logs its interval (guest wall clock, the same CLOCK_REALTIME, cut to µs) before it
//! releases.
//!
//! Chaos: two threads pick random live contenders (mostly the current holder) and either
//! SIGKILL the lockbydir process, or SIGSTOP it for 5-400 ms (longer than the small timeouts,
//! so it is often taken over) and then SIGCONT it. A stop hits either lockbydir alone (its command keeps running, as when
//! only the locking process is descheduled) or its whole process group (lockbydir and the
//! command, as when the holder's machine pauses). A SIGKILLed `exec` leaves its command running
//! as an orphan; the test waits (up to 10 s) for every started command to log its end. A few
//! such orphans vanish without logging it (seen here: 2 of 36 in one run; the test prints
//! them); their holds count as never ending, which can only add allowed overlaps, since a
//! holder whose `exec` was killed is never confirmed.
//!
//! What "overlap" means. A holder is *confirmed* when its `lockbydir exec` (or `lockbydir run`)
//! exited 0 after it got the lock: every refresh and the release renamed the holder's own state
//! entry, so the state stayed that acquisition's from the grant to the release and nobody else
//! was granted the lock in between (a takeover renames that very entry, and a holder that finds
//! its entry gone exits 70, "compromised"; a late release that nobody took over is still 0).
//! The logged interval runs from the command's first instruction to its last, which lies inside
//! [grant, release] whatever was paused: a stopped lockbydir cannot release before its command
//! ended, and a stopped command only stretches an interval that still ends before the release.
//! So, among confirmed holders:
//!
//! - no two logged intervals overlap;
//! - no holder at all (confirmed or not) whose fence is higher than a confirmed holder's
//!   started before that confirmed holder's command ended (its grant came after the release);
//! - and no fence appears twice among all logged grants (fences increase strictly).
//!
//! Holders that were taken over (exit 70, or a sleeper whose release failed) may well overlap
//! the next one: that is what fencing is for, and the test counts those overlaps to show the
//! chaos does create them. What it cannot see: whether a holder *believed* too long (a takeover
//! a little before the holder's own deadline); that is the model checker's and the clock tests'
//! job. All processes share one machine clock, so no clock skew is exercised here. No timing is
//! asserted; the amount of work is bounded by rounds and by a wall-clock cap per filesystem.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Scratch, guest, lockbydir};

/// `exec` contenders and plugin contenders, looping on one lock.
const EXEC_CONTENDERS: usize = 12;
const PLUGIN_CONTENDERS: usize = 4;
/// Runs each contender starts at most, per filesystem.
const ROUNDS: usize = 120;
/// No contender starts a new run after this long, per filesystem.
const WALL_CAP: Duration = Duration::from_secs(30);
/// Threads sending signals.
const CHAOS_THREADS: usize = 2;
/// The lock everyone fights over.
const LOCK: &str = "chaos";
/// Set to 1 for a run: that lockbydir polls instead of sleeping until woken.
const NO_WAKEUPS_VAR: &str = "LOCKBYDIR_NO_WAKEUPS";

/// The command `exec` runs: `$1` log, `$2` run id, `$3` seconds of work (or 0).
const COMMAND: &str = r#"s=$EPOCHREALTIME; echo "S $2 $LOCKBYDIR_FENCE ${s/./}" >> "$1"; [ "$3" = 0 ] || sleep "$3"; e=$EPOCHREALTIME; echo "E $2 ${e/./}" >> "$1""#;

/// A small deterministic generator (xorshift), seeded per thread from a printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Exit status 0.
    Zero,
    /// Another exit code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// One run of `lockbydir exec` or `lockbydir run`.
struct Run {
    id: String,
    plugin: bool,
    /// Run with `LOCKBYDIR_NO_WAKEUPS=1`.
    polling: bool,
    end: End,
    stderr: PathBuf,
}

/// A hold as logged: who, which fence, from `start` to `end` (µs since the epoch; `end` is
/// `None` if the command never logged its end).
#[derive(Clone, Debug)]
struct Hold {
    id: String,
    fence: u64,
    start: u64,
    end: Option<u64>,
}

/// A live lockbydir process the chaos threads may signal.
struct Live {
    /// Its run id, which is also its holder label.
    id: String,
    /// Whether a chaos thread is busy with it (stopped it and has yet to continue it).
    busy: bool,
}

/// Live lockbydir processes by pid. A pid stays here only while its process has not been
/// reaped, so it cannot have been reused.
type Registry = Arc<Mutex<HashMap<u32, Live>>>;

/// Wait until `pid` has exited without reaping it (so it stays signalable until we say so).
fn wait_exited_unreaped(pid: u32) {
    loop {
        // SAFETY: waitid fills the zeroed siginfo; WNOWAIT leaves the child waitable.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "waitid {pid}: {err}"
        );
    }
}

fn kill(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions. ESRCH (a group already gone) is fine.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Spawn, register, wait, deregister, reap.
fn run_one(mut cmd: Command, id: &str, registry: &Registry) -> End {
    use std::os::unix::process::ExitStatusExt;
    // Its own process group, so a chaos thread can stop lockbydir and its command together.
    cmd.process_group(0);
    let mut child: Child = cmd.spawn().expect("spawn lockbydir");
    let pid = child.id();
    let live = Live {
        id: id.to_owned(),
        busy: false,
    };
    registry.lock().unwrap().insert(pid, live);
    wait_exited_unreaped(pid);
    // A chaos thread that sent SIGSTOP just as the process was exiting will still send
    // SIGCONT: keep the pid (unreaped, so not reusable) until it is done.
    loop {
        let mut live = registry.lock().unwrap();
        if live.get(&pid).is_some_and(|l| !l.busy) {
            live.remove(&pid);
            break;
        }
        drop(live);
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = child.wait().unwrap();
    match (status.code(), status.signal()) {
        (Some(0), _) => End::Zero,
        (Some(code), _) => End::Code(code),
        (None, Some(signal)) => End::Signal(signal),
        _ => unreachable!("a reaped child exited or was killed"),
    }
}

/// One contender: `ROUNDS` runs (or until `stop_at`), each with random timeout, patience and
/// work.
fn contender(
    index: usize,
    seed: u64,
    locks: &Path,
    work: &Path,
    stop_at: Instant,
    registry: &Registry,
) -> Vec<Run> {
    let mut rng = Rng::new(seed ^ ((index as u64 + 1) << 32));
    let plugin = index >= EXEC_CONTENDERS;
    let mut runs = Vec::new();
    for round in 0..ROUNDS {
        if Instant::now() >= stop_at {
            break;
        }
        // Mostly tiny timeouts, some up to 200 ms.
        let timeout = if rng.below(2) == 0 {
            rng.range(5, 20)
        } else {
            rng.range(5, 200)
        };
        // Now and then a single attempt; otherwise long enough to outlast a dead waiter's
        // ticket (2 s) most of the time, short enough to bound the run.
        let patience = if rng.below(10) == 0 {
            0
        } else {
            rng.range(500, 6_000)
        };
        // Work up to twice the timeout (so the refreshes matter), at most 60 ms.
        let work_ms = if rng.below(4) == 0 {
            0
        } else {
            rng.below((2 * timeout).min(60) + 1)
        };
        let id = format!("c{index}-{round}");
        let stderr = work.join("stderr").join(&id);
        let mut cmd = lockbydir(locks);
        // Half the runs poll, as a host without wake-ups would (the fallback's own run of this
        // hammer): woken waiters and polling ones share the line.
        let polling = rng.below(2) == 0;
        if polling {
            cmd.env(NO_WAKEUPS_VAR, "1");
        }
        if plugin {
            cmd.args(["run", "--quiet", "--dir"])
                .arg(format!("{}::/work", work.display()))
                .arg(guest("sleeper.wasm"))
                .args([
                    "--",
                    "--name",
                    &id,
                    "--log",
                    "/work/plugin-log",
                    "--bed",
                    LOCK,
                ])
                .args(["--sleep-ms", &work_ms.to_string()])
                .args(["--patience-ms", &patience.to_string()])
                .args(["--timeout-ms", &timeout.to_string()]);
        } else {
            cmd.args(["exec", "--quiet", "--holder", &id])
                .args(["--lease", &format!("{timeout}ms")])
                .args(["--patience", &format!("{patience}ms")])
                .args([LOCK, "--", "bash", "-c", COMMAND, "bash"])
                .arg(work.join("exec-log"))
                .arg(&id)
                .arg(if work_ms == 0 {
                    "0".to_owned()
                } else {
                    format!("{}.{:03}", work_ms / 1000, work_ms % 1000)
                })
                .env("LC_ALL", "C");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap());
        let end = run_one(cmd, &id, registry);
        runs.push(Run {
            id,
            plugin,
            polling,
            end,
            stderr,
        });
    }
    runs
}

/// What the chaos threads did.
#[derive(Default)]
struct Chaos {
    stopped_alone: usize,
    stopped_group: usize,
    killed: usize,
}

/// Until `done`: every 5-60 ms pick a live contender nobody else is signalling (mostly one
/// that holds the lock, when there is one); SIGKILL it (one time in five) or SIGSTOP it
/// (alone or with its command) for 5-400 ms, then SIGCONT.
fn chaos(seed: u64, locks: &Path, registry: &Registry, done: &AtomicBool) -> Chaos {
    let mut rng = Rng::new(seed);
    let mut did = Chaos::default();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.range(5, 60)));
        let holder = current_holder(locks);
        let mut live = registry.lock().unwrap();
        let idle: Vec<u32> = live
            .iter()
            .filter(|(_, l)| !l.busy)
            .map(|(pid, _)| *pid)
            .collect();
        // Mostly holders: that is where safety is at stake. A waiter stopped first in line
        // holds the line up while stopped, and a killed one for up to its ticket's 2 s, so
        // anyone (waiter or holder) is picked for a stop one time in four, for a kill one in ten.
        let kill_it = rng.below(5) == 0;
        let holders: Vec<u32> = idle
            .iter()
            .copied()
            .filter(|p| Some(&live[p].id) == holder.as_ref() || runs_a_command(*p))
            .collect();
        let pool = if rng.below(if kill_it { 10 } else { 4 }) != 0 {
            holders
        } else {
            idle
        };
        if pool.is_empty() {
            continue;
        }
        let pid = pool[rng.below(pool.len() as u64) as usize];
        if kill_it {
            // Still registered, so not reaped: the pid is the process we spawned.
            kill(pid as i32, libc::SIGKILL);
            did.killed += 1;
            continue;
        }
        // The group's id is lockbydir's pid; negative signals the whole group.
        let target = if rng.below(2) == 0 {
            did.stopped_alone += 1;
            pid as i32
        } else {
            did.stopped_group += 1;
            -(pid as i32)
        };
        kill(target, libc::SIGSTOP);
        live.get_mut(&pid).unwrap().busy = true;
        drop(live);
        // A stopped process cannot exit, so it stays registered and unreaped until SIGCONT.
        std::thread::sleep(Duration::from_millis(rng.range(5, 400)));
        kill(target, libc::SIGCONT);
        if let Some(l) = registry.lock().unwrap().get_mut(&pid) {
            l.busy = false;
        }
    }
    did
}

/// The holder label of lock `LOCK`'s state entry, if it is held: the last dot-separated field
/// of `held.<fence>.<since>.<deadline>.<timeout>.<token>.<holder>` (our labels need no
/// percent-encoding). Only a hint for picking victims: the checks never rely on it.
fn current_holder(locks: &Path) -> Option<String> {
    std::fs::read_dir(locks.join(format!("{LOCK}.lockdir")))
        .ok()?
        .flatten()
        .find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with("held")
                .then(|| name.rsplit('.').next().map(str::to_owned))?
        })
}

/// Whether lockbydir process `pid` has a child: an `exec` has its command running only after
/// it got the lock (it may since have been taken over).
fn runs_a_command(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("children")).is_ok_and(|c| !c.trim().is_empty())
    })
}

/// `pid state` of every process whose command line has the argument `id` (to explain a
/// command that never logged its end).
fn processes_mentioning(id: &str) -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| {
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == id.as_bytes())
                .then(|| {
                    let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
                    let state = stat.rsplit(") ").next().unwrap_or("?").split(' ').next();
                    format!(
                        "{} {}",
                        p.file_name().to_string_lossy(),
                        state.unwrap_or("?")
                    )
                })
        })
        .collect()
}

/// Parse the exec log (`S id fence start-µs` / `E id end-µs`) and the sleeper's log
/// (`slept start-ns end-ns fence name`) into holds.
fn holds(work: &Path) -> Vec<Hold> {
    // Orphaned commands may still be appending: read complete lines only.
    let read = |file: &str| {
        let mut text = std::fs::read_to_string(work.join(file)).unwrap_or_default();
        text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
        text
    };
    let mut by_id: HashMap<String, Hold> = HashMap::new();
    let text = read("exec-log");
    let num = |s: &str, line: &str| -> u64 {
        s.parse()
            .unwrap_or_else(|_| panic!("malformed log line {line:?}"))
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["S", id, fence, start] => {
                let hold = Hold {
                    id: (*id).to_owned(),
                    fence: num(fence, line),
                    start: num(start, line),
                    end: None,
                };
                assert!(
                    by_id.insert(hold.id.clone(), hold).is_none(),
                    "two starts of {id}"
                );
            }
            ["E", id, end] => {
                let hold = by_id
                    .get_mut(*id)
                    .unwrap_or_else(|| panic!("end of {id} logged before its start"));
                hold.end = Some(num(end, line));
            }
            _ => panic!("malformed log line {line:?}"),
        }
    }
    let text = read("plugin-log");
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["slept", start, end, fence, id] => {
                let hold = Hold {
                    id: (*id).to_owned(),
                    fence: num(fence, line),
                    // ns cut to µs, like bash's clock, so that cutting cannot reorder events.
                    start: num(start, line) / 1000,
                    end: Some(num(end, line) / 1000),
                };
                assert!(
                    by_id.insert(hold.id.clone(), hold).is_none(),
                    "two holds of {id}"
                );
            }
            ["gave-up", ..] => {}
            _ => panic!("malformed log line {line:?}"),
        }
    }
    by_id.into_values().collect()
}

/// What the checks found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Verdict {
    /// Pairs of confirmed holders whose intervals overlap.
    overlaps: usize,
    /// Holds with a higher fence than a confirmed one that started before it ended.
    granted_during_confirmed: usize,
    /// Fences logged more than once.
    repeated_fences: usize,
    /// Pairs of holds, at least one of them not confirmed, that overlap (allowed).
    overlaps_unconfirmed: usize,
    /// First few violations, described.
    examples: Vec<String>,
}

/// The three checks of the module doc over `holds`, `confirmed` naming the confirmed ones.
fn check(holds: &[Hold], confirmed: &HashSet<String>) -> Verdict {
    let mut v = Verdict::default();
    let note = |v: &mut Verdict, what: String| {
        if v.examples.len() < 5 {
            v.examples.push(what);
        }
    };
    let mut fences = HashMap::new();
    for h in holds {
        if let Some(other) = fences.insert(h.fence, &h.id) {
            v.repeated_fences += 1;
            note(
                &mut v,
                format!("fence {} granted to both {other} and {}", h.fence, h.id),
            );
        }
    }
    let mut sorted: Vec<&Hold> = holds.iter().collect();
    sorted.sort_by_key(|h| h.start);
    for (i, a) in sorted.iter().enumerate() {
        let a_end = a.end.unwrap_or(u64::MAX);
        for b in &sorted[i + 1..] {
            if b.start >= a_end {
                break;
            }
            if confirmed.contains(&a.id) && confirmed.contains(&b.id) {
                v.overlaps += 1;
                note(
                    &mut v,
                    format!(
                        "confirmed {} (fence {}) and {} (fence {}) overlapped by {} µs",
                        a.id,
                        a.fence,
                        b.id,
                        b.fence,
                        a_end.min(b.end.unwrap_or(u64::MAX)) - b.start
                    ),
                );
            } else {
                v.overlaps_unconfirmed += 1;
            }
        }
    }
    for c in holds.iter().filter(|h| confirmed.contains(&h.id)) {
        let c_end = c.end.expect("a confirmed command logged its end");
        for h in holds
            .iter()
            .filter(|h| h.fence > c.fence && h.start < c_end)
        {
            v.granted_during_confirmed += 1;
            note(
                &mut v,
                format!(
                    "{} (fence {}) started {} µs before confirmed {} (fence {}) ended",
                    h.id,
                    h.fence,
                    c_end - h.start,
                    c.id,
                    c.fence
                ),
            );
        }
    }
    v
}

/// The whole hammer on lock directory `locks`, logging into `work`.
fn hammer(place: &str, locks: &Path, work: &Path) {
    std::fs::create_dir_all(work.join("stderr")).unwrap();
    // Compile the lock component and the sleeper into the cache before the chaos starts.
    for warm in [
        lockbydir(locks)
            .args(["exec", "--quiet", "warm-up", "--", "true"])
            .status(),
        lockbydir(locks)
            .args(["run", "--quiet", "--dir"])
            .arg(format!("{}::/work", work.display()))
            .arg(guest("sleeper.wasm"))
            .args([
                "--",
                "--name",
                "warm",
                "--log",
                "/work/warm-log",
                "--bed",
                "warm-up",
            ])
            .args(["--sleep-ms", "0"])
            .stdout(Stdio::null())
            .status(),
    ] {
        assert!(warm.unwrap().success(), "warm-up run failed");
    }

    let seed = common::now_ms();
    eprintln!("{place}: seed {seed}");
    let registry: Registry = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let stop_at = started + WALL_CAP;
    let chaos_threads: Vec<_> = (0..CHAOS_THREADS)
        .map(|i| {
            let (locks, registry, done) = (locks.to_owned(), registry.clone(), done.clone());
            std::thread::spawn(move || chaos(seed ^ (0xC4A0 + i as u64), &locks, &registry, &done))
        })
        .collect();
    let contenders: Vec<_> = (0..EXEC_CONTENDERS + PLUGIN_CONTENDERS)
        .map(|i| {
            let (locks, work, registry) = (locks.to_owned(), work.to_owned(), registry.clone());
            std::thread::spawn(move || contender(i, seed, &locks, &work, stop_at, &registry))
        })
        .collect();
    let runs: Vec<Run> = contenders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    done.store(true, Ordering::SeqCst);
    let mut did = Chaos::default();
    for t in chaos_threads {
        let d = t.join().unwrap();
        did.stopped_alone += d.stopped_alone;
        did.stopped_group += d.stopped_group;
        did.killed += d.killed;
    }
    let hammered = started.elapsed();

    // Commands orphaned by a SIGKILLed exec finish their short work on their own; wait (polling,
    // generously) until every started command has logged its end.
    let waited = Instant::now();
    let mut logged = holds(work);
    while logged.iter().any(|h| h.end.is_none()) && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        logged = holds(work);
    }
    let unfinished = logged.iter().filter(|h| h.end.is_none()).count();
    for h in logged.iter().filter(|h| h.end.is_none()).take(5) {
        let run = runs.iter().find(|r| r.id == h.id).map(|r| r.end);
        eprintln!(
            "{place}: {} (fence {}) never logged its end; its lockbydir ended {run:?}; still \
             running: {:?}",
            h.id,
            h.fence,
            processes_mentioning(&h.id)
        );
    }

    let logged_ids: HashSet<&str> = logged.iter().map(|h| h.id.as_str()).collect();
    let mut confirmed = HashSet::new();
    let (mut compromised, mut gave_up, mut killed, mut took_over) = (0, 0, 0, 0);
    let mut other = Vec::new();
    for run in &runs {
        let err = std::fs::read_to_string(&run.stderr).unwrap_or_default();
        took_over += err.matches("took over lock").count();
        let held = logged_ids.contains(run.id.as_str());
        match run.end {
            // A sleeper that ran out of patience exits 0 too, without a hold.
            End::Zero if run.plugin && !held => gave_up += 1,
            End::Zero => {
                assert!(
                    held,
                    "{} exited 0 but its command never logged a hold",
                    run.id
                );
                confirmed.insert(run.id.clone());
            }
            End::Code(70) => compromised += 1,
            End::Code(1) if run.plugin && err.contains("compromised") => compromised += 1,
            End::Code(75) => gave_up += 1,
            End::Signal(libc::SIGKILL) => killed += 1,
            end => other.push(format!("{} ({end:?}): {}", run.id, err.trim())),
        }
    }
    let v = check(&logged, &confirmed);
    eprintln!(
        "{place}: {} runs ({} exec, {} plugin; {} polling) in {:.1}s: {} confirmed, {} compromised (taken over \
         while holding), {} gave up, {} killed, {} other; {} takeovers; chaos: {} stops of \
         lockbydir alone, {} of its whole group, {} SIGKILLs",
        runs.len(),
        runs.iter().filter(|r| !r.plugin).count(),
        runs.iter().filter(|r| r.plugin).count(),
        runs.iter().filter(|r| r.polling).count(),
        hammered.as_secs_f64(),
        confirmed.len(),
        compromised,
        gave_up,
        killed,
        other.len(),
        took_over,
        did.stopped_alone,
        did.stopped_group,
        did.killed,
    );
    eprintln!(
        "{place}: {} holds logged ({unfinished} never logged an end); overlaps among confirmed \
         holders: {}; grants during a confirmed hold: {}; repeated fences: {}; overlaps involving \
         a holder that was not confirmed (allowed): {}",
        logged.len(),
        v.overlaps,
        v.granted_during_confirmed,
        v.repeated_fences,
        v.overlaps_unconfirmed
    );
    for o in other.iter().take(5) {
        eprintln!("{place}: other ending: {o}");
    }
    assert!(
        !confirmed.is_empty(),
        "no run was confirmed: the hammer tested nothing"
    );
    assert_eq!(
        (v.overlaps, v.granted_during_confirmed, v.repeated_fences),
        (0, 0, 0),
        "{place}: confirmed holders overlapped or a fence repeated: {:#?}",
        v.examples
    );
    // Nothing the chaos left behind (dead holders, stale tickets, marks) wedges the lock, and
    // the next grant's fence is above every fence handed out during the chaos.
    let after = common::output(lockbydir(locks).args([
        "exec",
        "--quiet",
        "--patience",
        "30s",
        LOCK,
        "--",
        "sh",
        "-c",
        "echo $LOCKBYDIR_FENCE",
    ]));
    assert!(
        after.status.success(),
        "{place}: the lock stayed blocked after the chaos: {}",
        common::stderr(&after)
    );
    let next: u64 = common::stdout(&after).trim().parse().unwrap();
    let highest = logged.iter().map(|h| h.fence).max().unwrap_or(0);
    assert!(
        next > highest,
        "{place}: fence {next} after the chaos, but {highest} was handed out during it"
    );
}

/// One hammer at a time: the machine has few cores, and the two share them otherwise.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn chaos_on_the_scratch_dir_never_lets_two_confirmed_holders_overlap() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !has_bash() {
        return;
    }
    let scratch = Scratch::new("chaos");
    hammer("scratch dir", &scratch.dir("locks"), &scratch.dir("work"));
}

#[test]
fn chaos_on_tmpfs_never_lets_two_confirmed_holders_overlap() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !has_bash() {
        return;
    }
    let scratch = Scratch::new("chaos-tmpfs");
    let point = scratch.dir("mnt");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&point)
        .stderr(Stdio::piped())
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipped: cannot mount tmpfs here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run mount: {e}");
            return;
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(point.clone());
    // Locks on tmpfs; the logs stay on the scratch dir (any filesystem appends atomically).
    let locks = point.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    hammer("tmpfs", &locks, &scratch.dir("work"));
}

fn has_bash() -> bool {
    let ok = Command::new("bash")
        .args(["-c", "[ -n \"$EPOCHREALTIME\" ]"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: needs bash 5 (its $EPOCHREALTIME timestamps the holds)");
    }
    ok
}

#[test]
fn the_checks_catch_overlaps_early_grants_and_repeated_fences() {
    let hold = |id: &str, fence, start, end| Hold {
        id: id.to_owned(),
        fence,
        start,
        end: Some(end),
    };
    let all = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
    let clean = [
        hold("a", 1, 0, 10),
        hold("b", 2, 10, 20),
        hold("c", 3, 15, 30),
    ];
    // b was taken over by c: their overlap is allowed.
    let v = check(&clean, &all(&["a", "c"]));
    assert_eq!(
        (v.overlaps, v.granted_during_confirmed, v.repeated_fences),
        (0, 0, 0)
    );
    assert_eq!(v.overlaps_unconfirmed, 1);
    // Had b been confirmed, both the overlap and c's early grant are caught.
    let v = check(&clean, &all(&["a", "b", "c"]));
    assert_eq!((v.overlaps, v.granted_during_confirmed), (1, 1), "{v:?}");
    // An unconfirmed holder with a higher fence that started inside a confirmed hold.
    let early = [hold("a", 1, 0, 10), hold("b", 2, 9, 12)];
    let v = check(&early, &all(&["a"]));
    assert_eq!(v.granted_during_confirmed, 1, "{v:?}");
    // A fence handed out twice.
    let twice = [hold("a", 1, 0, 10), hold("b", 1, 20, 30)];
    assert_eq!(check(&twice, &all(&["a", "b"])).repeated_fences, 1);
}
