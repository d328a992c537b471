//! `lockbydir status`: every lock in the lock directory.

use std::io::Write;

use clap::Args;
use lockbydir::display::escape;
use lockbydir::duration::display_ms;
use lockbydir::error::describe;
use lockbydir::{LockService, wit};
use serde::Serialize;

use super::Global;

/// Show every lock in the lock directory: name, state, holder, fence, age, deadline.
///
/// A lock is `expired` only once a waiter could take it over (past its deadline by this
/// clock and by the filesystem's); until then it is `held`, also past its deadline. A lockdir
/// that cannot be read, or holds something lockbydir never writes, is shown as `broken`, with
/// why, among the others.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON (one array of objects) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One lock, as `--json` prints it. Times are ms since the Unix epoch.
#[derive(Serialize)]
struct Row {
    name: String,
    state: &'static str,
    holder: Option<String>,
    fence: u64,
    since_ms: Option<u64>,
    deadline_ms: Option<u64>,
    timeout_ms: Option<u64>,
    age_ms: Option<u64>,
    expires_in_ms: Option<i64>,
    /// Why a `broken` lock cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn status(global: &Global, args: StatusArgs) -> anyhow::Result<u8> {
    let lock_dir = global.lock_dir()?;
    let runtime = global.runtime()?;
    let mut service = LockService::new(&runtime, &lock_dir)?;
    let now = service.now_ms()?;
    let rows: Vec<Row> = service
        .list_locks()?
        .into_iter()
        .map(|l| row(l, now))
        .collect();
    // One buffered writer: ten thousand locks are ten thousand lines.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(0);
    }
    if rows.is_empty() {
        writeln!(out, "no locks in {}", lock_dir.display())?;
        out.flush()?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<24} {:<8} {:>6} {:>9} {:>16}  HOLDER",
        "NAME", "STATE", "FENCE", "AGE", "EXPIRES"
    )?;
    for r in rows {
        let age = r.age_ms.map_or("-".into(), display_ms);
        let expires = match r.expires_in_ms {
            None => "-".into(),
            Some(ms) if ms >= 0 => format!("in {}", display_ms(ms.unsigned_abs())),
            Some(ms) => format!("{} ago", display_ms(ms.unsigned_abs())),
        };
        // A broken lock's last column says why instead of who.
        let last = r.error.or(r.holder).unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<8} {:>6} {:>9} {:>16}  {}",
            escape(&r.name),
            r.state,
            r.fence,
            age,
            expires,
            escape(&last)
        )?;
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

fn row(lock: wit::LockStatus, now: u64) -> Row {
    let (state, fence, holder, error) = match lock.state {
        Ok(wit::LockState::Absent) => ("absent", 0, None, None),
        Ok(wit::LockState::Free(fence)) => ("free", fence, None, None),
        Ok(wit::LockState::Held(h)) => ("held", h.fence, Some(h), None),
        Ok(wit::LockState::Expired(h)) => ("expired", h.fence, Some(h), None),
        Err(e) => ("broken", 0, None, Some(describe(&e))),
    };
    Row {
        name: lock.name,
        state,
        fence,
        since_ms: holder.as_ref().map(|h| h.since_ms),
        deadline_ms: holder.as_ref().map(|h| h.deadline_ms),
        timeout_ms: holder.as_ref().map(|h| h.timeout_ms),
        age_ms: holder.as_ref().map(|h| now.saturating_sub(h.since_ms)),
        expires_in_ms: holder.as_ref().map(|h| signed_diff(h.deadline_ms, now)),
        holder: holder.map(|h| h.holder),
        error,
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
