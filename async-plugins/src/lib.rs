//! `tasks`: a WASI 0.3 plugin whose tasks wait for locks without blocking each other
//! (`lockbydir:waiting/waiting@0.1.0`). Run it with `lockbydir run`.
//!
//! - `tasks count --lock NAME --counter FILE --log FILE [--waits N] [--label L]
//!   [--fairness fifo|bounded]`: N tasks at
//!   once, each with a handle of its own, wait for lock NAME; each, when its turn comes,
//!   increments the counter file and logs its hold (`<start-ns> <end-ns> <fence> <label>-<i>`,
//!   the counter plugin's format), then releases. At the end it prints the order in which the
//!   tasks held the lock.
//! - `tasks show --lock-a A --lock-b B`: task 1 waits for lock A while task 2 takes and
//!   releases lock B; each says what it does as it does it.
//! - `tasks limits --lock NAME --others A,B,... [--hold-ms MS]`: two waits at once on one
//!   handle of NAME (the host allows one), then one wait on each of the other locks at once,
//!   each holding its lock MS (default 500) once it gets it; prints every outcome.
//! - `tasks give-up --lock NAME --after-ms MS`: wait for lock NAME, cut short by a timer after
//!   MS; then print the lock's queue and whether the handle holds the lock, and again once
//!   the lock is free (at most 30 s later).

use std::cell::RefCell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::{Either, join_all, select};

wit_bindgen::generate!({
    path: "wit",
    world: "tasks",
    generate_all,
});

use lockbydir::lock::lock::{Lock, queue};
use lockbydir::lock::types::{AcquireOutcome, Error, Fairness, LockState, Options};
use lockbydir::waiting::waiting;
use wasi::clocks::monotonic_clock::wait_for;

struct Tasks;

impl exports::wasi::cli::run::Guest for Tasks {
    async fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let result = match args.first().map(String::as_str) {
            Some("count") => count(&Args(&args[1..])).await,
            Some("show") => show(&Args(&args[1..])).await,
            Some("give-up") => give_up(&Args(&args[1..])).await,
            Some("limits") => limits(&Args(&args[1..])).await,
            _ => Err("usage: tasks count|show|give-up [--option value]...".to_owned()),
        };
        result.map_err(|why| eprintln!("tasks: {why}"))
    }
}

export!(Tasks);

/// `--name value` pairs.
struct Args<'a>(&'a [String]);

impl Args<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        let at = self.0.iter().position(|a| *a == flag)?;
        self.0.get(at + 1).map(String::as_str)
    }

    fn need(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} takes a number, not {v:?}")),
        }
    }
}

fn open(name: &str, holder: &str) -> Result<Lock, String> {
    open_with(name, holder, None)
}

fn open_with(name: &str, holder: &str, fairness: Option<Fairness>) -> Result<Lock, String> {
    let options = Options {
        lease_ms: Some(30_000),
        wait_ms: None,
        holder: Some(holder.to_owned()),
        fairness,
        tuning: None,
    };
    Lock::open(name, &options).map_err(|e| describe(name, &e))
}

fn describe(name: &str, e: &Error) -> String {
    format!("lock {name}: {e:?}")
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Many tasks, one lock, one counter.
async fn count(args: &Args<'_>) -> Result<(), String> {
    let name = args.need("lock")?;
    let counter = args.need("counter")?;
    let log = args.need("log")?;
    let waits = args.num("waits", 10)?;
    let label = args.get("label").unwrap_or("tasks");
    let fairness = match args.get("fairness") {
        None => None,
        Some("fifo") => Some(Fairness::Fifo),
        Some("bounded") => Some(Fairness::Bounded),
        Some(other) => return Err(format!("--fairness is fifo or bounded, not {other:?}")),
    };
    let handles = (0..waits)
        .map(|i| open_with(name, &format!("{label}-{i}"), fairness))
        .collect::<Result<Vec<_>, _>>()?;
    let order = RefCell::new(Vec::new());
    let tasks = handles.iter().enumerate().map(|(i, lock)| {
        let order = &order;
        async move {
            let grant = match waiting::acquire(lock).await {
                Ok(AcquireOutcome::Acquired(grant)) => grant,
                Ok(AcquireOutcome::Busy(_)) => return Err(format!("task {i}: busy")),
                Err(e) => return Err(format!("task {i}: {}", describe(name, &e))),
            };
            let start = now_ns();
            let text = std::fs::read_to_string(counter).map_err(|e| format!("{counter}: {e}"))?;
            let n: u64 = text
                .trim()
                .parse()
                .map_err(|_| format!("{counter} holds {text:?}"))?;
            std::fs::write(counter, (n + 1).to_string()).map_err(|e| format!("{counter}: {e}"))?;
            let end = now_ns();
            let line = format!("{start} {end} {} {label}-{i}\n", grant.fence);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .map_err(|e| format!("{log}: {e}"))?;
            order.borrow_mut().push(i);
            lock.release().map_err(|e| describe(name, &e))?;
            Ok(())
        }
    });
    for done in join_all(tasks).await {
        done?;
    }
    let order: Vec<String> = order.borrow().iter().map(|i| i.to_string()).collect();
    println!("held in order: {}", order.join(" "));
    Ok(())
}

/// One task waits for A while another takes B.
async fn show(args: &Args<'_>) -> Result<(), String> {
    let (a_name, b_name) = (args.need("lock-a")?, args.need("lock-b")?);
    let (a, b) = (open(a_name, "task-1")?, open(b_name, "task-2")?);
    let task1 = async {
        println!("task 1: waiting for {a_name}");
        match waiting::acquire(&a)
            .await
            .map_err(|e| describe(a_name, &e))?
        {
            AcquireOutcome::Acquired(grant) => {
                println!("task 1: got {a_name} (fence {})", grant.fence);
                a.release().map_err(|e| describe(a_name, &e))?;
                println!("task 1: released {a_name}");
                Ok(())
            }
            AcquireOutcome::Busy(_) => Err(format!("task 1: {a_name} stayed busy")),
        }
    };
    let task2 = async {
        println!("task 2: taking {b_name}");
        match waiting::acquire(&b)
            .await
            .map_err(|e| describe(b_name, &e))?
        {
            AcquireOutcome::Acquired(grant) => {
                println!("task 2: got {b_name} (fence {})", grant.fence);
                b.release().map_err(|e| describe(b_name, &e))?;
                println!("task 2: released {b_name}");
                Ok::<(), String>(())
            }
            AcquireOutcome::Busy(_) => Err(format!("task 2: {b_name} stayed busy")),
        }
    };
    let (one, two) = futures::join!(task1, task2);
    one.and(two)
}

// ANCHOR: give-up
/// A wait cut short by a timer.
async fn give_up(args: &Args<'_>) -> Result<(), String> {
    let name = args.need("lock")?;
    let after_ms = args.num("after-ms", 200)?;
    let lock = open(name, "gives-up")?;
    let wait = Box::pin(waiting::acquire(&lock));
    // Halfway, a look at the queue: this handle waits in it.
    let timer = Box::pin(async {
        wait_for(after_ms * 500_000).await;
        match queue(name) {
            Ok(q) => println!("waiters while waiting: {}", q.live),
            Err(e) => println!("waiters while waiting: {}", describe(name, &e)),
        }
        wait_for(after_ms * 500_000).await;
    });
    match select(wait, timer).await {
        Either::Left((outcome, _)) => {
            return Err(format!("the wait ended before the timer: {outcome:?}"));
        }
        // The wait's future is dropped here, with the timer's.
        Either::Right(((), _)) => println!("gave up after {after_ms} ms"),
    }
    let waiting_now = queue(name).map_err(|e| describe(name, &e))?.live;
    println!(
        "waiters now: {waiting_now}; this handle's fence: {:?}",
        lock.fence()
    );
    // Until the lock is free (its holder released it): this handle never takes it.
    for _ in 0..600 {
        match lock.inspect().map_err(|e| describe(name, &e))? {
            LockState::Held(_) | LockState::Expired(_) => wait_for(50_000_000).await,
            LockState::Free(_) | LockState::Absent => break,
        }
    }
    println!(
        "once free: {:?}; this handle's fence: {:?}",
        lock.inspect().map_err(|e| describe(name, &e))?,
        lock.fence()
    );
    Ok(())
}
// ANCHOR_END: give-up

/// What a wait ended with, in one word and its detail.
fn outcome(result: &Result<AcquireOutcome, Error>) -> String {
    match result {
        Ok(AcquireOutcome::Acquired(grant)) => format!("acquired (fence {})", grant.fence),
        Ok(AcquireOutcome::Busy(_)) => "busy".to_owned(),
        Err(Error::Denied(rule)) => format!("denied: {rule}"),
        Err(e) => format!("error: {e:?}"),
    }
}

/// Waits that the host's policy must bound.
async fn limits(args: &Args<'_>) -> Result<(), String> {
    let name = args.need("lock")?;
    let others: Vec<&str> = args.need("others")?.split(',').collect();
    let hold_ms = args.num("hold-ms", 500)?;
    let lock = open(name, "twice")?;
    let (first, second) = futures::join!(waiting::acquire(&lock), waiting::acquire(&lock));
    println!("same handle, first wait: {}", outcome(&first));
    println!("same handle, second wait: {}", outcome(&second));
    if lock.fence().is_some() {
        lock.release().map_err(|e| describe(name, &e))?;
    }
    let handles = others
        .iter()
        .map(|other| open(other, "many"))
        .collect::<Result<Vec<_>, _>>()?;
    let tasks = handles.iter().zip(&others).map(|(lock, other)| async move {
        let result = waiting::acquire(lock).await;
        println!("{other}: {}", outcome(&result));
        if result.is_ok_and(|o| matches!(o, AcquireOutcome::Acquired(_))) {
            wait_for(hold_ms * 1_000_000).await;
            let _ = lock.release();
        }
    });
    join_all(tasks).await;
    Ok(())
}
