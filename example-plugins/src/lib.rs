//! What every example plugin shares: the bindings of the `plugin` world, and small helpers.
//!
//! A plugin is an ordinary WASI command (`fn main`, compiled for `wasm32-wasip2`) that also
//! imports `lockbydir:lock/lock`. The host decides which directories it may see (`--dir`).

wit_bindgen::generate!({
    path: "../wit",
    world: "plugin",
});

pub use lockbydir::lock::lock::Lock;
pub use lockbydir::lock::types::{AcquireOutcome, Error, LockState, Options};

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch on the host's wall clock.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Append one line to a file (creating it), as one write.
pub fn append_line(path: &str, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Options with the given lease, wait (`u64::MAX`: no limit) and holder label; the host's
/// defaults for everything else.
pub fn options(lease_ms: u64, wait_ms: u64, holder: &str) -> Options {
    Options {
        lease_ms: Some(lease_ms),
        wait_ms: (wait_ms != u64::MAX).then_some(wait_ms),
        holder: Some(holder.to_owned()),
        fairness: None,
        tuning: None,
    }
}

/// A readable one-line description of a lock error.
pub fn describe(err: &Error) -> String {
    match err {
        Error::InvalidName(why) => format!("invalid lock name: {why}"),
        Error::InvalidOption(why) => format!("invalid lock option: {why}"),
        Error::Io(io) => format!("{} `{}` failed: {}", io.operation, io.path, io.message),
        Error::NotHeld => "the lock is not held".to_owned(),
        Error::AlreadyHeld => "the lock is already held by this handle".to_owned(),
        Error::Denied(why) => format!("denied by the host: {why}"),
        Error::Corrupt(why) => format!("corrupt lockdir: {why}"),
        Error::Unavailable(why) => format!("the lock service is unavailable: {why}"),
        Error::FencesExhausted(path) => {
            format!("`{path}` has handed out its last fencing token and grants no more")
        }
        Error::Compromised(c) => format!(
            "compromised: the lock (fence {}) was taken over{}",
            c.fence,
            c.now_held_by
                .as_ref()
                .map(|h| format!(" by `{}` (fence {})", h.holder, h.fence))
                .unwrap_or_default()
        ),
    }
}

/// Parse `--key value` pairs from the command line into a lookup function, exiting with a
/// usage message on anything else.
pub fn args(usage: &str) -> impl Fn(&str) -> Option<String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.len().is_multiple_of(2) || argv.iter().step_by(2).any(|k| !k.starts_with("--")) {
        eprintln!("usage: {usage}");
        std::process::exit(2);
    }
    move |key: &str| {
        argv.chunks(2)
            .find(|kv| kv[0] == format!("--{key}"))
            .map(|kv| kv[1].clone())
    }
}

/// A numeric argument with a default; exits with a message if it does not parse.
pub fn num(arg: &impl Fn(&str) -> Option<String>, key: &str, default: u64) -> u64 {
    match arg(key) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("--{key} wants a whole number, not {v:?}");
            std::process::exit(2)
        }),
    }
}
