//! The counter plugin as it was built against `lockbydir:lock@0.1.0` (`wit-published/0.1.0`),
//! kept unchanged so that the tests show plugins built against that version still load and
//! take turns with plugins of later versions. Do not move it to a newer version: add a plugin
//! for the newer one beside it.
//!
//! `counter-v0-1-0 --lock NAME --counter FILE --log FILE [--rounds N] [--label L]`: each round
//! takes the lock, increments the counter file with a plain read-modify-write, appends
//! `<start-ns> <end-ns> <fence> <label>` to the log, and releases the lock.

wit_bindgen::generate!({
    path: "../wit-published/0.1.0",
    world: "plugin",
});

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use lockbydir::lock::lock::{AcquireOutcome, Lock, Options};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let arg = |key: &str| {
        argv.chunks(2)
            .find(|kv| kv[0] == format!("--{key}"))
            .and_then(|kv| kv.get(1).cloned())
    };
    let (Some(name), Some(counter), Some(log)) = (arg("lock"), arg("counter"), arg("log")) else {
        fail("--lock, --counter and --log are required");
    };
    let rounds: u64 = arg("rounds").map_or(10, |r| r.parse().unwrap_or_else(|_| fail("--rounds")));
    let label = arg("label").unwrap_or_else(|| "counter-v0.1.0".to_owned());
    let options = Options {
        timeout_ms: 30_000,
        patience_ms: u64::MAX,
        min_poll_ms: 1,
        max_poll_ms: 50,
        max_clock_skew_ms: 0,
        holder: label.clone(),
    };
    let lock = Lock::open(&name, &options).unwrap_or_else(|e| fail(&format!("open: {e:?}")));
    for _ in 0..rounds {
        let fence = match lock.acquire() {
            Ok(AcquireOutcome::Acquired(grant)) => grant.fence,
            Ok(AcquireOutcome::Busy(_)) => fail("gave up waiting, with unlimited patience"),
            Err(e) => fail(&format!("acquire: {e:?}")),
        };
        let start = now_ns();
        let text = std::fs::read_to_string(&counter).unwrap_or_else(|e| fail(&e.to_string()));
        let n: u64 = text
            .trim()
            .parse()
            .unwrap_or_else(|_| fail("the counter is no number"));
        std::fs::write(&counter, (n + 1).to_string()).unwrap_or_else(|e| fail(&e.to_string()));
        let end = now_ns();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| fail(&e.to_string()));
        file.write_all(format!("{start} {end} {fence} {label}\n").as_bytes())
            .unwrap_or_else(|e| fail(&e.to_string()));
        lock.release()
            .unwrap_or_else(|e| fail(&format!("release: {e:?}")));
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn fail(why: &str) -> ! {
    eprintln!("counter-v0-1-0: {why}");
    std::process::exit(1)
}
