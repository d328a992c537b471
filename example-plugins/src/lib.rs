//! What the example plugins share: small helpers for their command lines and logs. The locks
//! come from the plugin SDK, `lockbydir-plugin`.
//!
//! A plugin is an ordinary WASI command (`fn main`, compiled for `wasm32-wasip2`) that also
//! imports `lockbydir:lock/lock`. The host decides which directories it may see (`--dir`).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockbydir_plugin::LockOptions;

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

/// Options with the given lease, wait (`u64::MAX`: no limit) and holder label, in
/// milliseconds as the command lines give them; the host's defaults for everything else.
pub fn options(lease_ms: u64, wait_ms: u64, holder: &str) -> LockOptions {
    let options = LockOptions::new()
        .lease(Duration::from_millis(lease_ms))
        .holder(holder);
    match wait_ms {
        u64::MAX => options,
        ms => options.wait(Duration::from_millis(ms)),
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
