//! A deliberately hostile plugin, for the tests of the host's defences. Each `--try` mode is
//! one attack; it prints one line per attempt (`<attempt>: <result>`) so tests can check what
//! happened, and exits 0 unless noted (WASI 0.2 `exit` carries only success or failure, so
//! any nonzero code reaches the host as 1).
//!
//! - `escape --path P`...: read and write each path (`..`, absolute paths, planted symlinks).
//! - `forge --lock N`: release, refresh, take and inspect a lock someone else holds; open bad names.
//! - `spin --lock N`: take the lock, then spin forever.
//! - `hog --lock N`: take the lock, then allocate memory without end.
//! - `trap --lock N`: take the lock, then trap.
//! - `exit --lock N`: take the lock, then exit 3 without releasing.
//! - `wait --lock N`: wait for the lock with unlimited patience; exit 4 if it gives up.
//! - `hoard --count K`: take K different locks `hoard-0`..; stop at the first refusal.
//! - `peek --lock N --secret S`: list every lock, then open and inspect S and N.
//! - `hold --lock N --label L --hold-ms MS`: take N with holder label L, keep it MS ms.
//! - `churn --count K`: open, try-acquire, release and drop `job-0`.. `job-K-1`, each a new
//!   lockdir; stop at the first refusal.
//! - `stdin`: read all of stdin and say how many bytes came.
//! - `spin-wait --lock N --spin-ms S`: open a handle with unlimited patience, compute for S ms,
//!   then wait for the lock; exit 4 if it gives up.
//! - `handles [--hold N] [--fill 1] [--count K] [--label-bytes B]`: take lock N first (if
//!   given), grow its own memory until the host refuses (if `--fill 1`), then open up to K
//!   handles on lock `handle` with a holder label of B bytes, keeping them all; stop at the
//!   first error, and exit 0 without releasing or closing anything.

use lockbydir_example_plugins::{args, num, options};
use lockbydir_plugin::raw::lockbydir::lock::{lock as raw_lock, types as raw_types};
use lockbydir_plugin::{Attempt, Error, Lock, LockState};

fn main() {
    let arg = args(
        "hostile --try MODE [--lock N] [--path P] [--count K] [--timeout-ms MS] [--spin-ms S] \
         [--hold N] [--fill 1] [--label-bytes B]",
    );
    let mode = arg("try").unwrap_or_default();
    let lock_name = arg("lock").unwrap_or_else(|| "target".to_owned());
    let timeout = num(&arg, "timeout-ms", 60_000);
    match mode.as_str() {
        "escape" => escape(&arg("path").unwrap_or_default()),
        "forge" => forge(&lock_name),
        "spin" => {
            let _lock = take(&lock_name, timeout);
            println!("spinning");
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "hog" => {
            let _lock = take(&lock_name, timeout);
            println!("hogging");
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => {
            let _lock = take(&lock_name, timeout);
            println!("trapping");
            std::process::abort();
        }
        "exit" => {
            let lock = take(&lock_name, timeout);
            println!("exiting without release");
            std::mem::forget(lock);
            std::process::exit(3);
        }
        "wait" => {
            let mut lock = options(timeout, u64::MAX, "hostile")
                .open(&lock_name)
                .unwrap_or_else(|e| fail(&e.to_string()));
            match lock.acquire() {
                Ok(Attempt::Acquired(_)) => println!("wait: acquired"),
                Ok(Attempt::Busy(_)) => {
                    println!("wait: gave up");
                    std::process::exit(4);
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        "hoard" => {
            let mut held = Vec::new();
            for i in 0..num(&arg, "count", 10) {
                let name = format!("hoard-{i}");
                let result = options(timeout, 0, "hostile")
                    .open(&name)
                    .and_then(|mut lock| keep_if_taken(&mut lock).map(|took| (lock, took)));
                match result {
                    Ok((lock, true)) => {
                        println!("{name}: acquired");
                        held.push(lock);
                    }
                    Ok((_, false)) => println!("{name}: busy"),
                    Err(e) => {
                        println!("{name}: {}", kind(&e));
                        break;
                    }
                }
            }
        }
        "peek" | "hold" | "churn" => policy_attack(&mode, &arg, &lock_name, timeout),
        // Limits (issue 12, items 1, 2, 5, 8).
        "stdin" => read_stdin(),
        "spin-wait" => spin_then_wait(&lock_name, num(&arg, "spin-ms", 1_000)),
        "handles" => open_handles(&arg, timeout),
        other => fail(&format!("unknown --try {other:?}")),
    }
}

/// Take `name` or exit 2. The handle comes back holding the lock, with no guard to release
/// it: only dropping the handle (or the plugin's end) lets it go.
fn take(name: &str, timeout: u64) -> Lock {
    let mut lock = options(timeout, 10_000, "hostile")
        .open(name)
        .unwrap_or_else(|e| fail(&e.to_string()));
    match lock.acquire() {
        Ok(Attempt::Acquired(guard)) => std::mem::forget(guard),
        Ok(Attempt::Busy(_)) => fail("could not take the lock"),
        Err(e) => fail(&e.to_string()),
    }
    println!("took {name}");
    lock
}

/// One try at `lock`; if it was taken, the handle keeps holding it (the guard is forgotten).
fn keep_if_taken(lock: &mut Lock) -> Result<bool, Error> {
    Ok(match lock.try_acquire()? {
        Attempt::Acquired(guard) => {
            std::mem::forget(guard);
            true
        }
        Attempt::Busy(_) => false,
    })
}

/// Try to read and write every path given (comma-separated).
fn escape(paths: &str) {
    for path in paths.split(',').filter(|p| !p.is_empty()) {
        let read = match std::fs::read(path) {
            Ok(_) => "READ".to_owned(),
            Err(e) => format!("denied ({:?})", e.kind()),
        };
        let write = match std::fs::write(path, b"pwned") {
            Ok(()) => "WRITTEN".to_owned(),
            Err(e) => format!("denied ({:?})", e.kind()),
        };
        let list = match std::fs::read_dir(path) {
            Ok(_) => "LISTED".to_owned(),
            Err(e) => format!("denied ({:?})", e.kind()),
        };
        println!("{path}: read {read}; write {write}; list {list}");
    }
}

/// Attack a lock held by someone else through the interface: the raw handle, since the SDK
/// offers release and refresh only on a guard of a lock it took.
fn forge(name: &str) {
    let lock = raw_lock::Lock::open(name, &raw_options(60_000, "forger"))
        .unwrap_or_else(|e| fail(&Error::from(e).to_string()));
    println!(
        "release: {}",
        lock.release().map_or_else(raw_kind, |_| "RELEASED".into())
    );
    println!(
        "refresh: {}",
        lock.refresh().map_or_else(raw_kind, |_| "REFRESHED".into())
    );
    let took = match lock.try_acquire() {
        Ok(raw_types::AcquireOutcome::Acquired(_)) => "ACQUIRED".to_owned(),
        Ok(raw_types::AcquireOutcome::Busy(h)) => {
            format!("busy (held by {})", h.map_or("?".into(), |h| h.holder))
        }
        Err(e) => raw_kind(e),
    };
    println!("try-acquire: {took}");
    for bad in ["../escape", "/etc/passwd", "..", "a\0b", ""] {
        let opened = options(1_000, 0, "forger").open(bad);
        println!(
            "open {bad:?}: {}",
            opened.map_or_else(|e| kind(&e), |_| "OPENED".into())
        );
    }
}

/// The error's WIT case name.
fn kind(e: &Error) -> String {
    e.case().to_owned()
}

/// Raw options with this lease and label that never wait.
fn raw_options(lease_ms: u64, holder: &str) -> raw_types::Options {
    raw_types::Options {
        lease_ms: Some(lease_ms),
        wait_ms: Some(0),
        holder: Some(holder.to_owned()),
        fairness: None,
        tuning: None,
    }
}

/// The WIT case name of an error of the raw interface.
fn raw_kind(e: raw_types::Error) -> String {
    kind(&Error::from(e))
}

fn fail(why: &str) -> ! {
    eprintln!("hostile: {why}");
    std::process::exit(2)
}

/// The attacks on the host's lock policy and its terminal output: `peek`, `hold`, `churn`.
fn policy_attack(mode: &str, arg: &impl Fn(&str) -> Option<String>, name: &str, timeout: u64) {
    match mode {
        "peek" => {
            match raw_lock::list_locks() {
                Ok(locks) => {
                    for l in locks {
                        match l.state {
                            Ok(s) => println!("list: {} {}", l.name, state(&s.into())),
                            Err(e) => println!("list: {} broken: {}", l.name, raw_kind(e)),
                        }
                    }
                }
                Err(e) => println!("list: {}", raw_kind(e)),
            }
            let secret = arg("secret").unwrap_or_else(|| "secret-db".to_owned());
            for target in [secret.as_str(), name] {
                let inspected = options(1_000, 0, "peeker")
                    .open(target)
                    .and_then(|lock| lock.inspect());
                match inspected {
                    Ok(s) => println!("inspect {target}: {}", state(&s)),
                    Err(e) => println!("inspect {target}: {}", kind(&e)),
                }
            }
            for target in [secret.as_str(), name] {
                match raw_lock::queue(target) {
                    Ok(q) => println!("queue {target}: {} waiting", q.live),
                    Err(e) => println!("queue {target}: {}", raw_kind(e)),
                }
            }
        }
        "hold" => {
            let label = arg("label").unwrap_or_default();
            let mut lock = options(timeout, 10_000, &label)
                .open(name)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let guard = match lock.acquire() {
                Ok(Attempt::Acquired(guard)) => guard,
                Ok(Attempt::Busy(_)) => fail("could not take the lock"),
                Err(e) => fail(&e.to_string()),
            };
            println!("took {name}");
            std::thread::sleep(std::time::Duration::from_millis(num(arg, "hold-ms", 5_000)));
            drop(guard);
        }
        _ => {
            let count = num(arg, "count", 100);
            for i in 0..count {
                let name = format!("job-{i}");
                let result = options(timeout, 0, "churner")
                    .open(&name)
                    .and_then(|mut lock| {
                        if let Attempt::Acquired(guard) = lock.try_acquire()? {
                            guard.release()?;
                        }
                        Ok(())
                    });
                if let Err(e) = result {
                    println!("{name}: {}", kind(&e));
                    break;
                }
            }
            println!("churn: done");
        }
    }
}

/// A lock state in one line: who holds it and with which fence.
fn state(s: &LockState) -> String {
    match s {
        LockState::Absent => "absent".to_owned(),
        LockState::Free { last_fence } => format!("free (fence {last_fence})"),
        LockState::Held(h) => format!("held by {} (fence {})", h.label, h.fence),
        LockState::Expired(h) => format!("expired, held by {} (fence {})", h.label, h.fence),
    }
}
// Limits (issue 12, items 1, 2, 5, 8).

/// Read stdin to its end: a plugin must get nothing there unless the user passed it on.
fn read_stdin() {
    use std::io::Read;
    let mut bytes = Vec::new();
    match std::io::stdin().read_to_end(&mut bytes) {
        Ok(n) => println!("stdin: {n} bytes"),
        Err(e) => println!("stdin: error ({:?})", e.kind()),
    }
}

/// Open a handle that may wait forever, compute for `spin_ms`, then wait.
fn spin_then_wait(name: &str, spin_ms: u64) {
    let mut lock = options(60_000, u64::MAX, "hostile")
        .open(name)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let start = std::time::Instant::now();
    let mut x: u64 = 0;
    while start.elapsed() < std::time::Duration::from_millis(spin_ms) {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    println!("waiting");
    match lock.acquire() {
        Ok(Attempt::Acquired(_)) => println!("wait: acquired"),
        Ok(Attempt::Busy(_)) => {
            println!("wait: gave up");
            std::process::exit(4);
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// Make the host hold as much as it lets us: many handles, long labels, a full memory.
fn open_handles(arg: &impl Fn(&str) -> Option<String>, timeout: u64) {
    let _held = arg("hold").map(|name| take(&name, timeout));
    let count = num(arg, "count", u64::MAX);
    let label = "L".repeat(num(arg, "label-bytes", 8) as usize);
    let opts = raw_options(timeout, &label);
    // Raw handles, the smallest (one word each): the attack is on the host's table of them.
    // Everything the loop needs is allocated before memory is filled.
    let mut handles = Vec::with_capacity(count.min(1 << 20) as usize);
    if arg("fill").is_some() {
        let mut pages = 0u64;
        while std::arch::wasm32::memory_grow(0, 1) != usize::MAX {
            pages += 1;
        }
        println!("filled: {pages} more pages");
    }
    for i in 0..count {
        match raw_lock::Lock::open("handle", &opts) {
            Ok(lock) => handles.push(lock),
            Err(e) => {
                println!("open {i}: {}", raw_kind(e));
                break;
            }
        }
    }
    println!("opened {}", handles.len());
    // End without dropping anything: the host must release and close it all.
    std::process::exit(0);
}
