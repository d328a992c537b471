//! A wasmtime host that gives its plugins lockbydir locks: two instances of a plugin, each on
//! a thread of its own, take turns on lock `shared`.
//!
//! Usage: `embed-sync PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS` (the plugin sees WORK_DIR as
//! `/work`; with the `counter` example plugin, each instance adds ROUNDS to `/work/counter`).

use anyhow::anyhow;
use lockbydir::embed::{self, LockbydirCtx, LockbydirView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// One plugin's Store data: its WASI context and its lock context.
struct Host {
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

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [plugin, lock_dir, work, rounds] = <[String; 4]>::try_from(args)
        .map_err(|_| anyhow!("usage: embed-sync PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS"))?;
    let runtime = lockbydir::RuntimeBuilder::new().build()?; // compiles the lock component
    let engine = Engine::default();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    embed::add_to_linker_sync(&mut linker)?;
    let component = Component::from_file(&engine, &plugin)?;

    let run = |label: &str| -> anyhow::Result<()> {
        let locks = LockbydirCtx::builder()
            .lock_dir(&lock_dir)
            .name(label)
            .allow_lock("shared")
            .build(&runtime)?;
        let wasi = WasiCtx::builder()
            .inherit_stderr()
            .args(&["counter", "--lock", "shared", "--counter", "/work/counter"])
            .args(&["--log", "/work/log", "--rounds", &rounds, "--label", label])
            .preopened_dir(&work, "/work", FsPerms::ReadWrite)?
            .build();
        let table = ResourceTable::new();
        let mut store = Store::new(&engine, Host { wasi, table, locks });
        let command = Command::instantiate(&mut store, &component, &linker)?;
        let ran = command.wasi_cli_run().call_run(&mut store)?;
        ran.map_err(|()| anyhow!("plugin {label} failed"))
    };
    std::thread::scope(|s| {
        let threads = ["sync-0", "sync-1"].map(|label| s.spawn(move || run(label)));
        threads
            .into_iter()
            .try_for_each(|t| t.join().expect("no panic"))
    })
}
