//! `lockbydir prune`: remove lockdirs nobody uses (the protocol itself never removes one).

use anyhow::Context;
use clap::Args;
use lockbydir::escape;
use lockbydir_cli::duration::display_ms;
use lockbydir_protocol::prune::{PruneOptions, Verdict, prune as prune_locks};
use lockbydir_protocol::{StdEnv, StdFs};

use super::{Global, duration_ms};

/// Remove the lockdirs that are free, have nobody queued, and were not used for DUR.
///
/// Held, expired and queued-for locks are kept, and a lock someone acquires while the prune
/// runs is kept (the removal is a compare-and-swap on its exact free state). The cost: a
/// pruned lock's fences restart at 1, so do not prune locks whose fences a resource checks
/// unless DUR is longer than any holder can be paused.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Only locks unused for at least this long, by the filesystem's clock (`0` for all).
    #[arg(long, value_name = "DUR", value_parser = duration_ms)]
    older_than: u64,
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn prune(global: &Global, args: PruneArgs) -> anyhow::Result<u8> {
    let lock_dir = global.lock_dir()?;
    let options = PruneOptions {
        older_than_ms: args.older_than,
        dry_run: args.dry_run,
    };
    let reports = prune_locks(&StdFs::new(&lock_dir), &StdEnv::new(), options)
        .with_context(|| format!("pruning the lock directory {}", lock_dir.display()))?;
    let (mut removed, mut kept) = (0, 0);
    for r in &reports {
        let name = escape(r.name.as_str());
        let line = match &r.verdict {
            Verdict::Pruned(fence) => {
                removed += 1;
                format!("pruned `{name}` (last fence {fence}; its fences restart at 1)")
            }
            Verdict::WouldPrune(fence) => {
                removed += 1;
                format!("would prune `{name}` (last fence {fence})")
            }
            kept_why => {
                kept += 1;
                let why = match kept_why {
                    Verdict::Held => "held".to_owned(),
                    Verdict::Queued => "waiters queued for it".to_owned(),
                    Verdict::Recent(ms) => format!("used {} ago", display_ms(*ms)),
                    Verdict::InUse => "used while the prune looked".to_owned(),
                    _ => "its state could not be read as one entry".to_owned(),
                };
                format!("kept `{name}`: {why}")
            }
        };
        println!("{line}");
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!("{verb} {removed} lockdir(s), kept {kept}");
    Ok(0)
}
