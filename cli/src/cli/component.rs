//! `lockbydir component`: hand out the embedded lock component and its WIT, for hosts in
//! other languages.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// The WIT package the component implements.
const WIT: &str = include_str!("../../../wit/lock.wit");

/// Write the embedded lock component (a wasm32-wasip2 component exporting
/// lockbydir:lock/lock) or its WIT, so any component host can use it.
#[derive(Args, Debug)]
pub struct ComponentArgs {
    /// Write the component to FILE.
    #[arg(long, value_name = "FILE", required_unless_present = "wit")]
    out: Option<PathBuf>,
    /// Print the WIT package (lockbydir:lock@0.1.0) to standard output.
    #[arg(long)]
    wit: bool,
}

pub fn component(args: ComponentArgs) -> anyhow::Result<u8> {
    if let Some(out) = &args.out {
        std::fs::write(out, lockbydir::guests::LOCK_COMPONENT)
            .with_context(|| format!("write the lock component to {}", out.display()))?;
        eprintln!(
            "lockbydir: wrote the lock component ({} bytes) to {}",
            lockbydir::guests::LOCK_COMPONENT.len(),
            out.display()
        );
    }
    if args.wit {
        print!("{WIT}");
    }
    Ok(0)
}
