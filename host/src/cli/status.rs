//! `lockbydir status`: every lock in the lock directory.

use clap::Args;
use lockbydir::display::escape;
use lockbydir::duration::display_ms;
use lockbydir::{LockService, wit};
use serde::Serialize;

use super::Global;

/// Show every lock in the lock directory: name, state, holder, fence, age, deadline.
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no locks in {}", lock_dir.display());
        return Ok(0);
    }
    println!(
        "{:<24} {:<8} {:>6} {:>9} {:>16}  HOLDER",
        "NAME", "STATE", "FENCE", "AGE", "EXPIRES"
    );
    for r in rows {
        let age = r.age_ms.map_or("-".into(), display_ms);
        let expires = match r.expires_in_ms {
            None => "-".into(),
            Some(ms) if ms >= 0 => format!("in {}", display_ms(ms as u64)),
            Some(ms) => format!("{} ago", display_ms(ms.unsigned_abs())),
        };
        println!(
            "{:<24} {:<8} {:>6} {:>9} {:>16}  {}",
            escape(&r.name),
            r.state,
            r.fence,
            age,
            expires,
            escape(&r.holder.unwrap_or_default())
        );
    }
    Ok(0)
}

fn row(lock: wit::LockStatus, now: u64) -> Row {
    let (state, fence, holder) = match lock.state {
        wit::LockState::Absent => ("absent", 0, None),
        wit::LockState::Free(fence) => ("free", fence, None),
        wit::LockState::Held(h) => ("held", h.fence, Some(h)),
        wit::LockState::Expired(h) => ("expired", h.fence, Some(h)),
    };
    Row {
        name: lock.name,
        state,
        fence,
        since_ms: holder.as_ref().map(|h| h.since_ms),
        deadline_ms: holder.as_ref().map(|h| h.deadline_ms),
        timeout_ms: holder.as_ref().map(|h| h.timeout_ms),
        age_ms: holder.as_ref().map(|h| now.saturating_sub(h.since_ms)),
        expires_in_ms: holder.as_ref().map(|h| h.deadline_ms as i64 - now as i64),
        holder: holder.map(|h| h.holder),
    }
}
