//! The plugin `lockbydir bench` measures with (not an example to copy): it calls the lock
//! through the host exactly as any plugin does, and records times on the host's clocks.
//!
//! `bench --mode loop --lock NAME --iterations N --out FILE`
//!   N/10 untimed rounds, then N timed rounds of try-acquire + release; writes
//!   `<elapsed-ns> <N>` to FILE.
//!
//! `bench --mode contend --lock NAME --label L --work DIR [--hold-us US] [--hold-sleep 1]
//!        [--patience-ms MS] [--rounds N] [--go-poll-ms MS]`
//!   Opens the lock, creates DIR/ready/L, waits for DIR/go (`<go-ns> <until-ns>`), then loops
//!   until until-ns (or N rounds, 0 = no limit): acquire, hold (busy, or asleep with
//!   `--hold-sleep 1`), release. Writes DIR/L.log at the end, one line per attempt in wall-clock
//!   ns: `acq <asked> <got> <releasing> <released>` or `gaveup <asked> <gave-up>`.
//!
//! `bench --mode idle --label L --work DIR` opens a lock, reports ready, waits for DIR/go.
//!
//! `bench --mode noop` returns at once (to time instantiation).

use std::time::{Duration, Instant};

use lockbydir_example_plugins::{args, now_ns, num, options};
use lockbydir_plugin::{Attempt, Lock};

fn main() {
    let arg = args(
        "bench --mode loop|contend|idle|noop [--lock NAME] [--iterations N] [--out FILE] [--label L] [--work DIR] [--hold-us US] [--hold-sleep 1] [--patience-ms MS] [--rounds N] [--go-poll-ms MS]",
    );
    let mode = arg("mode").unwrap_or_default();
    let lock_name = arg("lock").unwrap_or_else(|| "bench".to_owned());
    let label = arg("label").unwrap_or_else(|| "bench".to_owned());
    let patience_ms = num(&arg, "patience-ms", u64::MAX);
    let open = || {
        options(30_000, patience_ms, &label)
            .open(&lock_name)
            .unwrap_or_else(|e| fail(&e.to_string()))
    };
    match mode.as_str() {
        "noop" => {}
        "loop" => {
            let out = arg("out").unwrap_or_else(|| fail("--out is required"));
            let iterations = num(&arg, "iterations", 1_000);
            let mut lock = open();
            timed_loop(&mut lock, iterations / 10);
            let start = Instant::now();
            timed_loop(&mut lock, iterations);
            let elapsed = start.elapsed().as_nanos();
            write(&out, &format!("{elapsed} {iterations}\n"));
        }
        "idle" | "contend" => {
            let work = arg("work").unwrap_or_else(|| fail("--work is required"));
            let mut lock = open();
            let until_ns = wait_for_go(&work, &label, num(&arg, "go-poll-ms", 1));
            if mode == "contend" {
                let hold = Hold {
                    time: Duration::from_micros(num(&arg, "hold-us", 100)),
                    sleep: num(&arg, "hold-sleep", 0) != 0,
                };
                let log = contend(&mut lock, until_ns, num(&arg, "rounds", 0), &hold);
                write(&format!("{work}/{label}.log"), &log);
            }
        }
        other => fail(&format!("unknown --mode {other:?}")),
    }
}

/// `n` rounds of try-acquire + release on a lock nobody else uses.
fn timed_loop(lock: &mut Lock, n: u64) {
    for _ in 0..n {
        let guard = match lock.try_acquire().unwrap_or_else(|e| fail(&e.to_string())) {
            Attempt::Acquired(guard) => guard,
            Attempt::Busy(_) => fail("the uncontended lock was busy"),
        };
        guard.release().unwrap_or_else(|e| fail(&e.to_string()));
    }
}

/// How a holder holds the lock.
struct Hold {
    time: Duration,
    sleep: bool,
}

/// Loop acquire, hold, release until `until_ns` (or `rounds`); the log lines.
fn contend(lock: &mut Lock, until_ns: u128, rounds: u64, hold: &Hold) -> String {
    let mut log = String::new();
    let mut done = 0;
    while now_ns() < until_ns && (rounds == 0 || done < rounds) {
        done += 1;
        let asked = now_ns();
        let guard = match lock.acquire().unwrap_or_else(|e| fail(&e.to_string())) {
            Attempt::Acquired(guard) => guard,
            Attempt::Busy(_) => {
                log.push_str(&format!("gaveup {asked} {}\n", now_ns()));
                continue;
            }
        };
        let got = now_ns();
        if hold.sleep {
            std::thread::sleep(hold.time);
        } else {
            let end = Instant::now() + hold.time;
            while Instant::now() < end {
                std::hint::spin_loop();
            }
        }
        let releasing = now_ns();
        guard.release().unwrap_or_else(|e| fail(&e.to_string()));
        log.push_str(&format!("acq {asked} {got} {releasing} {}\n", now_ns()));
    }
    log
}

/// Say ready, then wait for the go file; returns its `until-ns`.
fn wait_for_go(work: &str, label: &str, poll_ms: u64) -> u128 {
    write(&format!("{work}/ready/{label}"), "");
    let go = format!("{work}/go");
    loop {
        if let Ok(text) = std::fs::read_to_string(&go) {
            let until = text.split_whitespace().nth(1).and_then(|t| t.parse().ok());
            return until.unwrap_or_else(|| fail(&format!("{go} holds {text:?}")));
        }
        std::thread::sleep(Duration::from_millis(poll_ms));
    }
}

fn write(path: &str, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| fail(&format!("write {path}: {e}")));
}

fn fail(why: &str) -> ! {
    eprintln!("bench plugin: {why}");
    std::process::exit(1)
}
