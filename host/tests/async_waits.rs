//! `embed::add_to_linker_async` on an executor whose blocking pool is smaller than the number
//! of plugins waiting for one lock: the holder's release, and its own filesystem calls, must
//! not queue behind the waits (tokio's pool holds 512 threads by default; this test makes it
//! two so that the waits fill it).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lockbydir::embed::{self, LockbydirCtx, LockbydirView};
use lockbydir::report::{Event, Reporter};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

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

/// Plugins that share one lock; with two blocking threads, at least two wait at any time.
const PLUGINS: usize = 5;
/// Rounds of each counter plugin.
const ROUNDS: u64 = 10;
/// How long a wait may last: far longer than the whole run takes when nothing queues (well
/// under a second). A release stuck behind the waits holds every plugin up until then; their
/// waits then end `busy`, and the plugins (which retry) each start waiting again.
const WAIT_BOUND: Duration = Duration::from_secs(30);

#[test]
fn releases_do_not_queue_behind_waits_when_the_blocking_pool_is_full() {
    let root = std::env::temp_dir().join(format!("lockbydir-async-waits-{}", std::process::id()));
    let (lock_dir, work) = (root.join("locks"), root.join("work"));
    std::fs::create_dir_all(&lock_dir).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("counter"), "0").unwrap();

    let runtime = lockbydir::RuntimeBuilder::new().build().unwrap();
    let engine = Engine::default();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    embed::add_to_linker_async(&mut linker).unwrap();
    let plugin = Component::new(&engine, lockbydir::guests::COUNTER_PLUGIN).unwrap();

    // Every wait a plugin starts: at most one per acquisition when each wait ends with the
    // lock, as it does unless the waits are held up past WAIT_BOUND.
    let waits = Arc::new(AtomicUsize::new(0));
    let counted = waits.clone();
    let reporter: Reporter = Arc::new(move |event: &Event<'_>| {
        if let Event::Waiting { .. } = event {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let store = |label: &str, work: &Path| -> Store<Host> {
        let args = [
            "counter",
            "--lock",
            "counter",
            "--counter",
            "/work/counter",
            "--log",
            "/work/log",
            "--label",
            label,
        ];
        let host = Host {
            wasi: WasiCtx::builder()
                .args(&args)
                .preopened_dir(work, "/work", FsPerms::ReadWrite)
                .unwrap()
                .build(),
            table: ResourceTable::new(),
            locks: LockbydirCtx::builder()
                .lock_dir(&lock_dir)
                .wait_deadline(Instant::now() + WAIT_BOUND)
                .on_event(reporter.clone())
                .build(&runtime)
                .unwrap(),
        };
        Store::new(&engine, host)
    };
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let results = executor.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..PLUGINS {
            let mut store = store(&format!("p{i}"), &work);
            let (linker, plugin) = (linker.clone(), plugin.clone());
            tasks.push(tokio::spawn(async move {
                let command = Command::instantiate_async(&mut store, &plugin, &linker).await?;
                command.wasi_cli_run().call_run(&mut store).await
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    });
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(())) => {}
            other => panic!("plugin p{i} did not finish its rounds: {other:?}"),
        }
    }
    let counter = std::fs::read_to_string(work.join("counter")).unwrap();
    assert_eq!(counter, (PLUGINS as u64 * ROUNDS).to_string());
    let waits = waits.load(Ordering::Relaxed);
    assert!(
        waits <= PLUGINS * ROUNDS as usize,
        "{waits} waits for {} acquisitions: waits ended without the lock (their bound, {} s, \
         ran out), so a release was held up behind them",
        PLUGINS * ROUNDS as usize,
        WAIT_BOUND.as_secs()
    );
    std::fs::remove_dir_all(&root).unwrap();
}
