//! `lockbydir compose`: put the lock component inside a plugin, for hosts without lockbydir.

use std::path::PathBuf;

use clap::Args;

/// Compose a plugin with the lock component, so that it takes locks on any WASI 0.2 host.
///
/// The result imports no lockbydir interface: its lockbydir:lock/lock@0.2.0 import is served
/// by a copy of the lock component inside it, which keeps its locks in the directory the host
/// preopens as `.` for it (for example `wasmtime run --dir LOCKS::.`). The plugin then sees
/// the lock directory itself (no sandbox between plugin and locks), and a waiting acquire
/// polls the directory (no wake-ups from a host).
#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// The plugin: a WASI 0.2 component importing lockbydir:lock/lock@0.2.0.
    #[arg(value_name = "PLUGIN.wasm")]
    plugin: PathBuf,
    /// Where to write the composed plugin (replaced if it exists; never the plugin itself).
    #[arg(short, long, value_name = "OUT.wasm")]
    out: PathBuf,
}

pub fn compose(args: ComposeArgs) -> anyhow::Result<u8> {
    lockbydir_cli::compose::compose_file(
        &args.plugin,
        &args.out,
        lockbydir::guests::LOCK_COMPONENT,
    )?;
    eprintln!(
        "lockbydir: wrote {} ({} composed with the lock component)",
        args.out.display(),
        args.plugin.display()
    );
    Ok(0)
}
