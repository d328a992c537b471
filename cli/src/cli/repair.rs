//! `lockbydir repair NAME`: make a corrupt lockdir usable again, keeping its fence.

use anyhow::Context;
use clap::Args;
use lockbydir::escape;
use lockbydir_protocol::repair::repair as repair_lockdir;
use lockbydir_protocol::{LockName, StdEnv, StdFs};

use super::Global;

/// Make a corrupt lockdir usable again without resetting its fence.
///
/// A lockdir is corrupt when it holds names lockbydir never writes and no state entry, or
/// two state entries (`status` shows it as `broken`). This sets its state to
/// `free.<F+1>`, F being the highest fence any entry in it records, so the next holder's fence
/// is higher than every earlier one; other state-like names are removed, foreign files kept.
/// Refuses, changing nothing, while the lock may still be held (a deadline not yet passed, or
/// a change more recent than its timeout), and when its fences are exhausted.
///
/// Removing the lockdir instead also works, but restarts fences at 1: a resource that rejects
/// fences lower than the highest it saw then rejects every new holder.
#[derive(Args, Debug)]
pub struct RepairArgs {
    /// The lock to repair.
    name: String,
}

pub fn repair(global: &Global, args: RepairArgs) -> anyhow::Result<u8> {
    let lock_dir = global.lock_dir()?;
    let name =
        LockName::new(&args.name).with_context(|| format!("lock name `{}`", escape(&args.name)))?;
    // The protocol natively, on the same directory: repair is one administrator's step, with
    // no plugin involved, and the protocol code is the same the lock component runs.
    match repair_lockdir(&StdFs::new(&lock_dir), &StdEnv::new(), &name) {
        Ok(done) => {
            println!(
                "repaired lock `{}` in {}: its state is now {} (the next holder gets fence {})",
                escape(name.as_str()),
                lock_dir.display(),
                escape(&done.entry),
                u128::from(done.fence) + 1
            );
            for n in &done.removed {
                println!("  removed {}", escape(n));
            }
            for n in &done.left {
                println!("  left {} (ignored next to the state entry)", escape(n));
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!(
                "lockbydir: cannot repair lock `{}` in {}: {}",
                escape(name.as_str()),
                lock_dir.display(),
                escape(&e.to_string())
            );
            Ok(1)
        }
    }
}
