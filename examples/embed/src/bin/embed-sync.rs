//! A sync wasmtime host: two instances of a plugin, each on a thread of its own, take turns
//! on lock `shared` (`embed-sync PLUGIN.wasm LOCK_DIR WORK_DIR ROUNDS`).

use lockbydir::embed::{self, LockbydirCtx};
use lockbydir_embed_example::{Args, Host};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let runtime = lockbydir::RuntimeBuilder::new().build()?; // the lock component
    let engine = Engine::default();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    embed::add_to_linker_sync(&mut linker)?;
    let plugin = Component::from_file(&engine, &args.plugin)?;
    std::thread::scope(|s| {
        let runs: Vec<_> = ["sync-0", "sync-1"]
            .map(|label| {
                let (args, runtime) = (&args, &runtime);
                let (engine, linker, plugin) = (&engine, &linker, &plugin);
                s.spawn(move || -> anyhow::Result<()> {
                    let locks = LockbydirCtx::builder()
                        .lock_dir(&args.lock_dir)
                        .name(label)
                        .allow_lock("shared")
                        .build(runtime)?;
                    let host = Host::new(args.work.as_ref(), &args.plugin_args(label), locks)?;
                    let mut store = Store::new(engine, host);
                    let command = Command::instantiate(&mut store, plugin, linker)?;
                    let ran = command.wasi_cli_run().call_run(&mut store)?;
                    ran.map_err(|()| anyhow::anyhow!("plugin {label} failed"))
                })
            })
            .into();
        runs.into_iter()
            .try_for_each(|r| r.join().expect("no panic"))
    })
}
