//! A wasmtime host that runs a WASI 0.3 plugin whose tasks wait for lockbydir locks without
//! blocking each other (`lockbydir:waiting`): one instance of the `tasks` example plugin
//! (`async-plugins/`), 2·ROUNDS tasks on lock `shared`, driven with `run_concurrent`.
//!
//! Usage: `embed-concurrent PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS`, as `embed-sync`.

use anyhow::anyhow;
use lockbydir::embed::{self, LockbydirCtx, LockbydirView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p3::bindings::Command;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// The plugin's Store data: its WASI context and its lock context.
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
        .map_err(|_| anyhow!("usage: embed-concurrent PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS"))?;
    let waits = rounds.parse::<u64>()? * 2;
    let runtime = lockbydir::RuntimeBuilder::new().build()?; // compiles the lock component
    let engine = Engine::new(Config::new().wasm_component_model_async(true))?;
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    embed::add_to_linker_concurrent(&mut linker)?;
    let component = Component::from_file(&engine, &plugin)?;

    let locks = LockbydirCtx::builder()
        .lock_dir(&lock_dir)
        .name("concurrent")
        .allow_lock("shared")
        .build(&runtime)?;
    let wasi = WasiCtx::builder()
        .inherit_stdout()
        .inherit_stderr()
        .args(&["tasks", "count", "--lock", "shared"])
        .args(&["--label", "concurrent"])
        .args(&["--counter", "/work/counter", "--log", "/work/log"])
        .args(&["--waits", &waits.to_string()])
        .preopened_dir(&work, "/work", FsPerms::ReadWrite)?
        .build();
    let table = ResourceTable::new();
    let mut store = Store::new(&engine, Host { wasi, table, locks });

    // A multi-thread executor driven from this thread: the lock calls that block (the lock
    // component's file operations) step out of it in place.
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    executor.block_on(async {
        let command = Command::instantiate_async(&mut store, &component, &linker).await?;
        let ran = store
            .run_concurrent(async move |store| command.wasi_cli_run().call_run(store).await)
            .await??;
        ran.map_err(|()| anyhow!("the plugin failed"))
    })
}
