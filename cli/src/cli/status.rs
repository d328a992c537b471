//! `lockbydir status`: the locks in the lock directory, like `lslocks`: state, holder (with
//! its pid where the label names one), fence, age, deadline, and who waits.

use std::io::Write;

use clap::Args;
use lockbydir::types as wit;
use lockbydir::{NamePattern, describe, escape};
use lockbydir_cli::duration::display_ms;
use lockbydir_cli::holder_label::origin;
use serde::Serialize;

use super::Global;
use super::backend::BackendArgs;

/// The version of `status --json`'s format. Within one version fields are only added, never
/// removed, renamed or retyped (docs/cli.md, "status --json").
pub const JSON_VERSION: u32 = 1;

/// Show the locks in the lock directory: name, state, fence, age, deadline, waiters, the
/// holder's pid and its label.
///
/// A lock is `expired` only once a waiter could take it over (past its deadline by this
/// clock and by the filesystem's); until then it is `held`, also past its deadline. A lockdir
/// that cannot be read, or holds something lockbydir never writes, is shown as `broken`, with
/// why, among the others; so is a queue that cannot be read, or holds names that are no
/// ticket. The pid (and host) are those the holder's label names, in the form `exec` writes:
/// `PROGRAM (pid PID on HOST)`.
///
/// Each NAME or PATTERN that matches no lock is named on stderr. The exit code is 1 when some
/// were given and none matched (as grep's is when nothing matched), else 0.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON (an object with a `version` field; docs/cli.md documents every field) instead
    /// of a table.
    #[arg(long)]
    json: bool,
    /// Show only the locks whose name matches one of these: a lock name, or a pattern in
    /// which `*` matches any run of characters, as `run --allow-lock` takes [default: every
    /// lock].
    #[arg(value_name = "NAME|PATTERN", value_parser = NamePattern::parse)]
    names: Vec<NamePattern>,
    #[command(flatten)]
    backend: BackendArgs,
}

/// `status --json`.
#[derive(Serialize)]
struct Report {
    version: u32,
    lock_dir: String,
    now_ms: u64,
    locks: Vec<Row>,
}

/// One lock, as `--json` prints it. Times are ms since the Unix epoch.
#[derive(Serialize)]
struct Row {
    name: String,
    state: &'static str,
    fence: u64,
    holder: Option<String>,
    holder_pid: Option<u32>,
    holder_host: Option<String>,
    since_ms: Option<u64>,
    deadline_ms: Option<u64>,
    timeout_ms: Option<u64>,
    age_ms: Option<u64>,
    expires_in_ms: Option<i64>,
    /// Why a `broken` lock cannot be read.
    error: Option<String>,
    queue: Queue,
}

/// A lock's waiters, as `--json` prints them.
#[derive(Serialize, Default)]
struct Queue {
    /// Live tickets; `None` if the queue cannot be read.
    waiters: Option<u32>,
    oldest_since_ms: Option<u64>,
    oldest_age_ms: Option<u64>,
    expired_tickets: u32,
    foreign: Vec<String>,
    /// Why the queue cannot be read.
    error: Option<String>,
}

pub fn status(global: &Global, args: StatusArgs) -> anyhow::Result<u8> {
    args.backend.refuse_lock_dir(global)?;
    let lock_dir = match args.backend.in_lock_dir() {
        true => global.lock_dir()?,
        false => std::path::PathBuf::new(),
    };
    let mut service = args.backend.open(global, &lock_dir)?;
    let now = service.now_ms()?;
    // Which of the names and patterns matched a lock.
    let mut matched = vec![false; args.names.len()];
    let mut wanted = |name: &str| {
        let mut any = args.names.is_empty();
        for (pattern, hit) in args.names.iter().zip(&mut matched) {
            if pattern.matches(name) {
                *hit = true;
                any = true;
            }
        }
        any
    };
    let mut rows = Vec::new();
    for lock in service.list_locks()? {
        if !wanted(&lock.name) {
            continue;
        }
        let queue = match service.queue(&lock.name) {
            Ok(q) => queue(q, now),
            // The queue's own failure (unreadable, not a directory): shown in its row.
            Err(lockbydir::Error::Lock { error, .. }) => Queue {
                error: Some(describe(&error)),
                ..Queue::default()
            },
            // A trap is a bug in the component or the host: not hidden in a row.
            Err(e) => return Err(e.into()),
        };
        rows.push(row(lock, queue, now));
    }
    for (pattern, _) in args.names.iter().zip(&matched).filter(|(_, hit)| !**hit) {
        eprintln!(
            "lockbydir: no lock matches `{}` in {}",
            escape(&pattern.to_string()),
            escape(service.place())
        );
    }
    // As grep: 1 when names were asked for and none matched.
    let code = match !args.names.is_empty() && rows.is_empty() {
        true => 1,
        false => 0,
    };
    // One buffered writer: ten thousand locks are ten thousand lines.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let report = Report {
            version: JSON_VERSION,
            lock_dir: lock_dir.to_string_lossy().into_owned(),
            now_ms: now,
            locks: rows,
        };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(code);
    }
    if rows.is_empty() {
        // Nothing asked for and nothing there; what was asked for and not found is above.
        if args.names.is_empty() {
            writeln!(out, "no locks in {}", escape(service.place()))?;
        }
        out.flush()?;
        return Ok(code);
    }
    writeln!(
        out,
        "{:<24} {:<8} {:>6} {:>9} {:>16} {:>7} {:>9} {:>8}  HOLDER",
        "NAME", "STATE", "FENCE", "AGE", "EXPIRES", "WAITERS", "OLDEST", "PID"
    )?;
    for r in rows {
        let age = r.age_ms.map_or("-".into(), display_ms);
        let expires = match r.expires_in_ms {
            None => "-".into(),
            Some(ms) if ms >= 0 => format!("in {}", display_ms(ms.unsigned_abs())),
            Some(ms) => format!("{} ago", display_ms(ms.unsigned_abs())),
        };
        let waiters = r.queue.waiters.map_or("?".into(), |n| n.to_string());
        let oldest = r.queue.oldest_age_ms.map_or("-".into(), display_ms);
        let pid = r.holder_pid.map_or("-".into(), |p| p.to_string());
        // A broken lock's last column says why instead of who; a broken queue, after it.
        let mut last = escape(&r.error.or(r.holder).unwrap_or_default()).to_string();
        if let Some(why) = &r.queue.error {
            last.push_str(&format!(" [queue: {}]", escape(why)));
        } else if !r.queue.foreign.is_empty() {
            let names: Vec<String> = r
                .queue
                .foreign
                .iter()
                .map(|n| escape(n).to_string())
                .collect();
            last.push_str(&format!(
                " [queue: {} name{} lockbydir never writes: {}]",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            ));
        }
        let line = format!(
            "{:<24} {:<8} {:>6} {:>9} {:>16} {:>7} {:>9} {:>8}  {}",
            escape(&r.name),
            r.state,
            r.fence,
            age,
            expires,
            waiters,
            oldest,
            pid,
            last.trim_start()
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    out.flush()?;
    Ok(0)
}

/// `later - earlier` in ms, negative if `later` is earlier, saturating instead of wrapping.
fn signed_diff(later: u64, earlier: u64) -> i64 {
    match later.checked_sub(earlier) {
        Some(ahead) => i64::try_from(ahead).unwrap_or(i64::MAX),
        None => i64::try_from(earlier - later).map_or(i64::MIN, |behind| -behind),
    }
}

/// A queue look as `--json` shows it.
fn queue(q: wit::QueueStatus, now: u64) -> Queue {
    Queue {
        waiters: Some(q.live),
        oldest_since_ms: q.oldest_arrival_ms,
        oldest_age_ms: q.oldest_arrival_ms.map(|a| now.saturating_sub(a)),
        expired_tickets: q.expired,
        foreign: q.foreign,
        error: None,
    }
}

fn row(lock: wit::LockStatus, queue: Queue, now: u64) -> Row {
    let (state, fence, holder, error) = match lock.state {
        Ok(wit::LockState::Absent) => ("absent", 0, None, None),
        Ok(wit::LockState::Free(fence)) => ("free", fence, None, None),
        Ok(wit::LockState::Held(h)) => ("held", h.fence, Some(h), None),
        Ok(wit::LockState::Expired(h)) => ("expired", h.fence, Some(h), None),
        Err(e) => ("broken", 0, None, Some(describe(&e))),
    };
    let from = holder.as_ref().and_then(|h| origin(&h.holder));
    Row {
        name: lock.name,
        state,
        fence,
        holder_pid: from.as_ref().map(|o| o.pid),
        holder_host: from.and_then(|o| o.host),
        since_ms: holder.as_ref().map(|h| h.since_ms),
        deadline_ms: holder.as_ref().map(|h| h.deadline_ms),
        timeout_ms: holder.as_ref().map(|h| h.lease_ms),
        age_ms: holder.as_ref().map(|h| now.saturating_sub(h.since_ms)),
        expires_in_ms: holder.as_ref().map(|h| signed_diff(h.deadline_ms, now)),
        holder: holder.map(|h| h.holder),
        error,
        queue,
    }
}

#[cfg(test)]
mod tests {
    use super::signed_diff;

    #[test]
    fn differences_saturate_instead_of_wrapping() {
        assert_eq!(signed_diff(5, 3), 2);
        assert_eq!(signed_diff(3, 5), -2);
        assert_eq!(signed_diff(u64::MAX, 1_700_000_000_000), i64::MAX);
        assert_eq!(signed_diff(0, u64::MAX), i64::MIN);
    }
}
