//! The seed's sleeper: wait for the bed (with limited patience), sleep in it, get up.
//! A forgetful sleeper never unlocks, and lingers (`--linger-ms`) before it exits: the bed
//! stays taken until its timeout passes.
//!
//! `sleeper --name WHO --log FILE [--bed LOCK] [--sleep-ms MS] [--patience-ms MS]
//!          [--timeout-ms MS] [--forget 1] [--linger-ms MS]`
//!
//! Log lines: `slept <start-ns> <end-ns> <fence> <name>` or `gave-up <ns> <name> <holder>`.

use lockbydir_example_plugins::{
    AcquireOutcome, Lock, append_line, args, describe, now_ns, num, options,
};

fn main() {
    let arg = args(
        "sleeper --name WHO --log FILE [--bed LOCK] [--sleep-ms MS] [--patience-ms MS] [--timeout-ms MS] [--forget 1] [--linger-ms MS]",
    );
    let (Some(name), Some(log)) = (arg("name"), arg("log")) else {
        eprintln!("sleeper: --name and --log are required");
        std::process::exit(2);
    };
    let bed = arg("bed").unwrap_or_else(|| "bed".to_owned());
    let sleep_ms = num(&arg, "sleep-ms", 300);
    let forget = num(&arg, "forget", 0) != 0;
    let linger_ms = num(&arg, "linger-ms", 0);
    let opts = options(
        num(&arg, "timeout-ms", 1_000),
        num(&arg, "patience-ms", 5_000),
        &name,
    );
    let lock = Lock::open(&bed, &opts).unwrap_or_else(|e| fail(&name, &describe(&e)));
    match lock
        .acquire()
        .unwrap_or_else(|e| fail(&name, &describe(&e)))
    {
        AcquireOutcome::Busy(holder) => {
            let holder = holder.map_or_else(|| "?".to_owned(), |h| h.holder);
            println!("{name}: ran out of patience; `{holder}` still has the {bed}");
            append_line(&log, &format!("gave-up {} {name} {holder}", now_ns()))
                .unwrap_or_else(|e| fail(&name, &format!("append to {log}: {e}")));
        }
        AcquireOutcome::Acquired(grant) => {
            let start = now_ns();
            let took = grant
                .took_over
                .map(|h| format!(" (woke `{}`'s expired claim)", h.holder));
            println!(
                "{name}: sleeping in the {bed} for {sleep_ms} ms{}",
                took.unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
            let end = now_ns();
            append_line(&log, &format!("slept {start} {end} {} {name}", grant.fence))
                .unwrap_or_else(|e| fail(&name, &format!("append to {log}: {e}")));
            if forget {
                // Wander off without unlocking: the bed stays taken until its timeout.
                println!("{name}: got up and forgot to unlock");
                std::thread::sleep(std::time::Duration::from_millis(linger_ms));
                std::mem::forget(lock);
            } else {
                lock.release()
                    .unwrap_or_else(|e| fail(&name, &describe(&e)));
                println!("{name}: got up");
            }
        }
    }
}

fn fail(name: &str, why: &str) -> ! {
    eprintln!("sleeper {name}: {why}");
    std::process::exit(1)
}
