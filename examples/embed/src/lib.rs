//! What both example hosts share: their Store data, which holds WASI and the lock context.

use std::path::Path;

use lockbydir::embed::{LockbydirCtx, LockbydirView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// One plugin's Store data.
pub struct Host {
    wasi: WasiCtx,
    table: ResourceTable,
    locks: LockbydirCtx,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LockbydirView for Host {
    fn lockbydir(&mut self) -> &mut LockbydirCtx {
        &mut self.locks
    }
}

impl Host {
    /// Store data for one instance of the counter plugin: `work` granted as `/work`, `args` its
    /// arguments, `locks` its lock context.
    pub fn new(work: &Path, args: &[String], locks: LockbydirCtx) -> anyhow::Result<Host> {
        let wasi = WasiCtx::builder()
            .inherit_stderr()
            .args(args)
            .preopened_dir(work, "/work", FsPerms::ReadWrite)?
            .build();
        let table = ResourceTable::new();
        Ok(Host { wasi, table, locks })
    }
}

/// The example hosts' command line: `PLUGIN LOCK_DIR WORK_DIR ROUNDS`.
pub struct Args {
    /// The plugin component (the `counter` example plugin).
    pub plugin: String,
    /// The lock directory.
    pub lock_dir: String,
    /// The directory holding `counter` and `log`, granted to the plugin as `/work`.
    pub work: String,
    /// Rounds per instance.
    pub rounds: String,
}

impl Args {
    /// Read the command line, or say what it should be.
    pub fn parse() -> anyhow::Result<Args> {
        let a: Vec<String> = std::env::args().skip(1).collect();
        let [plugin, lock_dir, work, rounds] = <[String; 4]>::try_from(a)
            .map_err(|_| anyhow::anyhow!("usage: PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS"))?;
        Ok(Args {
            plugin,
            lock_dir,
            work,
            rounds,
        })
    }

    /// Instance `label`'s arguments for the counter plugin: lock `shared`, one increment of
    /// `/work/counter` and one line of `/work/log` per round.
    pub fn plugin_args(&self, label: &str) -> Vec<String> {
        let args = ["counter", "--lock", "shared", "--counter", "/work/counter"];
        let more = [
            "--log",
            "/work/log",
            "--rounds",
            &self.rounds,
            "--label",
            label,
        ];
        args.iter().chain(&more).map(|s| s.to_string()).collect()
    }
}
