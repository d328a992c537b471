//! Hammer one lock: each round takes it, increments a shared counter file with a plain
//! read-modify-write, records the hold interval, and releases it. Without the lock the count
//! would come out short.
//!
//! `counter --lock NAME --counter FILE --log FILE [--rounds N] [--label L] [--timeout-ms MS]`
//!
//! Each log line: `<start-ns> <end-ns> <fence> <label>`.

use lockbydir_example_plugins::{append_line, args, now_ns, num, options};

fn main() {
    let arg = args(
        "counter --lock NAME --counter FILE --log FILE [--rounds N] [--label L] [--timeout-ms MS]",
    );
    let (Some(name), Some(counter), Some(log)) = (arg("lock"), arg("counter"), arg("log")) else {
        eprintln!("counter: --lock, --counter and --log are required");
        std::process::exit(2);
    };
    let rounds = num(&arg, "rounds", 10);
    let label = arg("label").unwrap_or_else(|| "counter".to_owned());
    let mut lock = options(num(&arg, "timeout-ms", 30_000), u64::MAX, &label)
        .open(&name)
        .unwrap_or_else(|e| fail(&e.to_string()));
    for _ in 0..rounds {
        let guard = lock.lock().unwrap_or_else(|e| fail(&e.to_string()));
        let start = now_ns();
        let text = std::fs::read_to_string(&counter)
            .unwrap_or_else(|e| fail(&format!("read {counter}: {e}")));
        let n: u64 = text
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(&format!("{counter} holds {text:?}")));
        std::fs::write(&counter, (n + 1).to_string())
            .unwrap_or_else(|e| fail(&format!("write {counter}: {e}")));
        let end = now_ns();
        append_line(&log, &format!("{start} {end} {} {label}", guard.fence()))
            .unwrap_or_else(|e| fail(&format!("append to {log}: {e}")));
        guard.release().unwrap_or_else(|e| fail(&e.to_string()));
    }
}

fn fail(why: &str) -> ! {
    eprintln!("counter: {why}");
    std::process::exit(1)
}
