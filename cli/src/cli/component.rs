//! `lockbydir component`: hand out the embedded lock component and its WIT, for hosts in
//! other languages.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// The files of the WIT package the component implements (`wit/`), by name.
const WIT_FILES: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("lock.wit", include_str!("../../../wit/lock.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// The whole package as one WIT document: its `package` line once, then every file's
/// interfaces and worlds.
fn wit_document() -> String {
    let mut out = String::new();
    for (i, (_, text)) in WIT_FILES.iter().enumerate() {
        let body = match i {
            0 => text.to_string(),
            _ => text
                .lines()
                .filter(|l| !l.starts_with("package "))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        out.push_str(body.trim_end());
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Write the embedded lock component (a wasm32-wasip2 component exporting
/// lockbydir:lock/lock) or its WIT, so any component host can use it.
#[derive(Args, Debug)]
pub struct ComponentArgs {
    /// Write the component to FILE.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["wit", "wit_dir"])]
    out: Option<PathBuf>,
    /// Print the WIT package (lockbydir:lock@0.2.0) to standard output, as one document.
    #[arg(long)]
    wit: bool,
    /// Write the WIT package's files into DIR (created if missing), as `wit-bindgen` and
    /// other component toolchains read it: `generate!({ path: "DIR" })`.
    #[arg(long, value_name = "DIR")]
    wit_dir: Option<PathBuf>,
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
    if let Some(dir) = &args.wit_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the WIT directory {}", dir.display()))?;
        for (name, text) in WIT_FILES {
            let file = dir.join(name);
            std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
        }
        eprintln!(
            "lockbydir: wrote the WIT package lockbydir:lock@0.2.0 ({} files) to {}",
            WIT_FILES.len(),
            dir.display()
        );
    }
    if args.wit {
        print!("{}", wit_document());
    }
    Ok(0)
}
