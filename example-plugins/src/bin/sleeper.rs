//! Wait for the bed (with limited patience), sleep in it, get up. A forgetful sleeper never
//! unlocks, and lingers (`--linger-ms`) before it exits: the bed stays taken until its timeout
//! passes.
//!
//! `sleeper --name WHO --log FILE [--bed LOCK] [--sleep-ms MS] [--patience-ms MS]
//!          [--timeout-ms MS] [--forget 1] [--linger-ms MS]`
//!
//! Log lines: `slept <start-ns> <end-ns> <fence> <name>` or `gave-up <ns> <name> <holder>`.

use lockbydir_example_plugins::{append_line, args, now_ns, num, options};
use lockbydir_plugin::Attempt;

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
    let mut lock = opts
        .open(&bed)
        .unwrap_or_else(|e| fail(&name, &e.to_string()));
    // Whether the sleeper walked off still holding the bed; the handle is then forgotten
    // too, after the guard (dropping a handle that holds the lock releases it).
    let forgot = match lock
        .acquire()
        .unwrap_or_else(|e| fail(&name, &e.to_string()))
    {
        Attempt::Busy(holder) => {
            let holder = holder.map_or_else(|| "?".to_owned(), |h| h.label);
            println!("{name}: ran out of patience; `{holder}` still has the {bed}");
            append_line(&log, &format!("gave-up {} {name} {holder}", now_ns()))
                .unwrap_or_else(|e| fail(&name, &format!("append to {log}: {e}")));
            false
        }
        Attempt::Acquired(guard) => {
            let start = now_ns();
            let took = guard
                .took_over()
                .map(|h| format!(" (woke `{}`'s expired claim)", h.label));
            println!(
                "{name}: sleeping in the {bed} for {sleep_ms} ms{}",
                took.unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
            let end = now_ns();
            append_line(
                &log,
                &format!("slept {start} {end} {} {name}", guard.fence()),
            )
            .unwrap_or_else(|e| fail(&name, &format!("append to {log}: {e}")));
            if forget {
                // Wander off without unlocking: the bed stays taken until its timeout.
                println!("{name}: got up and forgot to unlock");
                std::thread::sleep(std::time::Duration::from_millis(linger_ms));
                std::mem::forget(guard);
            } else {
                guard
                    .release()
                    .unwrap_or_else(|e| fail(&name, &e.to_string()));
                println!("{name}: got up");
            }
            forget
        }
    };
    if forgot {
        std::mem::forget(lock);
    }
}

fn fail(name: &str, why: &str) -> ! {
    eprintln!("sleeper {name}: {why}");
    std::process::exit(1)
}
