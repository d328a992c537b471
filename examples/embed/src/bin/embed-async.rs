//! An async (tokio) wasmtime host: two instances of a plugin, two tasks on ONE executor thread,
//! take turns on lock `shared` (`embed-async PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS`). A plugin
//! waiting for the lock does not block that thread: the other instance runs meanwhile.

use lockbydir::embed::{self, LockbydirCtx};
use lockbydir_embed_example::{Args, Host};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::Command;

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let runtime = lockbydir::RuntimeBuilder::new().build()?; // the lock component
    let engine = Engine::default();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    embed::add_to_linker_async(&mut linker)?;
    let plugin = Component::from_file(&engine, &args.plugin)?;
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    executor.block_on(async {
        let mut tasks = Vec::new();
        for label in ["async-0", "async-1"] {
            let locks = LockbydirCtx::builder()
                .lock_dir(&args.lock_dir)
                .name(label)
                .allow_lock("shared")
                .build(&runtime)?;
            let host = Host::new(args.work.as_ref(), &args.plugin_args(label), locks)?;
            let mut store = Store::new(&engine, host);
            let (linker, plugin) = (linker.clone(), plugin.clone());
            tasks.push(tokio::spawn(async move {
                let command = Command::instantiate_async(&mut store, &plugin, &linker).await?;
                let ran = command.wasi_cli_run().call_run(&mut store).await?;
                ran.map_err(|()| anyhow::anyhow!("plugin {label} failed"))
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    })
}
