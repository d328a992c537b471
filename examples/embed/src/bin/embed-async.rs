//! An async (tokio) wasmtime host that gives its plugins lockbydir locks: two instances of a
//! plugin, two tasks on ONE executor thread, take turns on lock `shared`. A plugin waiting for
//! the lock does not block that thread: the other instance runs meanwhile.
//!
//! Usage: `embed-async PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS`, as `embed-sync`.

use anyhow::anyhow;
use lockbydir::embed::{self, LockbydirCtx, LockbydirView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
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
        .map_err(|_| anyhow!("usage: embed-async PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS"))?;
    let runtime = lockbydir::RuntimeBuilder::new().build()?; // compiles the lock component
    let engine = Engine::default();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    embed::add_to_linker_async(&mut linker)?;
    let component = Component::from_file(&engine, &plugin)?;

    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    executor.block_on(async {
        let mut tasks = Vec::new();
        for label in ["async-0", "async-1"] {
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
            let (linker, component) = (linker.clone(), component.clone());
            tasks.push(tokio::spawn(async move {
                let command = Command::instantiate_async(&mut store, &component, &linker).await?;
                let ran = command.wasi_cli_run().call_run(&mut store).await?;
                ran.map_err(|()| anyhow!("plugin {label} failed"))
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    })
}
