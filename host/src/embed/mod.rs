//! Embed lockbydir in your own wasmtime host: give the plugins you run the
//! `lockbydir:lock/lock` import, the way `wasmtime-wasi-keyvalue` gives them `wasi:keyvalue`.
//! Every published version of the interface is served (`@0.2.0`, and `@0.1.0` through an
//! adapter), so plugins built against an older one keep working.
//!
//! 1. Build a [`LockbydirCtx`] per plugin Store with [`LockbydirCtx::builder`]: where the
//!    locks live, the plugin's policy (allowed lock names, lease cap, how many held, open,
//!    created), the lock component's memory cap, and who is told what happens
//!    ([`LockbydirCtxBuilder::on_event`]). For a lock directory, each context has a lock
//!    component instance of its own, compiled once in a [`crate::Runtime`].
//! 2. Keep it in the Store's data and implement [`LockbydirView`] to lend it out.
//! 3. Add it to your linker next to WASI: [`add_to_linker_sync`] for Stores you call
//!    synchronously (a plugin's `acquire` blocks the calling thread, which is what a sync
//!    host wants), [`add_to_linker_async`] for Stores you drive with `call_async` on tokio
//!    (every lock call, waits included, runs on a blocking thread: the executor thread goes
//!    on with other tasks; waits have threads of their own).
//!
//! Dropping the context (with the Store) releases every lock the plugin still holds.
//!
//! # Examples
//!
//! A sync host that runs the `counter` example plugin: it takes lock `counter` and increments
//! a file under it.
//!
//! ```
//! use lockbydir::embed::{self, LockbydirCtx, LockbydirView};
//! use wasmtime::component::{Component, Linker, ResourceTable};
//! use wasmtime::{Engine, Store};
//! use wasmtime_wasi::p2::bindings::sync::Command;
//! use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
//!
//! struct Host {
//!     wasi: WasiCtx,
//!     table: ResourceTable,
//!     locks: LockbydirCtx,
//! }
//!
//! impl WasiView for Host {
//!     fn ctx(&mut self) -> WasiCtxView<'_> {
//!         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
//!     }
//! }
//!
//! impl LockbydirView for Host {
//!     fn lockbydir(&mut self) -> &mut LockbydirCtx {
//!         &mut self.locks
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let root = std::env::temp_dir().join(format!("lockbydir-doc-embed-{}", std::process::id()));
//! # let (lock_dir, work) = (root.join("locks"), root.join("work"));
//! # std::fs::create_dir_all(&lock_dir)?;
//! # std::fs::create_dir_all(&work)?;
//! std::fs::write(work.join("counter"), "0")?;
//! let runtime = lockbydir::RuntimeBuilder::new().build()?; // the lock component, compiled once
//! let engine = Engine::default();
//! let mut linker = Linker::<Host>::new(&engine);
//! wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
//! embed::add_to_linker_sync(&mut linker)?;
//! let plugin = Component::new(&engine, lockbydir::guests::COUNTER_PLUGIN)?;
//!
//! let args = ["counter", "--lock", "counter", "--counter", "/work/counter", "--log", "/work/log"];
//! let host = Host {
//!     wasi: WasiCtx::builder()
//!         .args(&args)
//!         .preopened_dir(&work, "/work", FsPerms::ReadWrite)?
//!         .build(),
//!     table: ResourceTable::new(),
//!     locks: LockbydirCtx::builder().lock_dir(&lock_dir).allow_lock("counter").build(&runtime)?,
//! };
//! let mut store = Store::new(&engine, host);
//! let command = Command::instantiate(&mut store, &plugin, &linker)?;
//! let ran = command.wasi_cli_run().call_run(&mut store)?;
//! assert!(ran.is_ok());
//! assert_eq!(std::fs::read_to_string(work.join("counter"))?, "10"); // 10 rounds by default
//! # drop(store);
//! # std::fs::remove_dir_all(&root)?;
//! # Ok(())
//! # }
//! ```
//!
//! The same with tokio is in [`add_to_linker_async`]; `examples/embed/` runs both kinds of
//! host against `lockbydir exec`.

mod async_linker;
mod ctx;
mod error;
mod host;
mod v0_1_0;
mod waiting;

use wasmtime::component::{HasData, Linker};

use crate::bindings::{plugin, v0_1_0 as old, waiting as wait};

pub use ctx::PluginLocks;
pub use ctx::{LockbydirCtx, LockbydirCtxBuilder};
pub use error::BuildError;

/// Store data that holds a [`LockbydirCtx`] and lends it to the lock import's host functions.
pub trait LockbydirView {
    /// The plugin's lock context.
    fn lockbydir(&mut self) -> &mut LockbydirCtx;
}

struct HasLocks;

impl HasData for HasLocks {
    type Data<'a> = PluginLocks<'a>;
}

fn view<T: LockbydirView>(t: &mut T) -> PluginLocks<'_> {
    PluginLocks(t.lockbydir().state())
}

/// Provide `lockbydir:lock/lock` to the plugins instantiated with `linker`, for Stores
/// called synchronously (`call`, `Command::instantiate`): a plugin waiting in `acquire`
/// blocks the thread that called into it, with precise sleeps that a release of this
/// process ends early.
///
/// See the [module's example](self).
pub fn add_to_linker_sync<T: LockbydirView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    plugin::Plugin::add_to_linker::<T, HasLocks>(linker, view)?;
    old::Plugin::add_to_linker::<T, HasLocks>(linker, view)
}

/// Provide `lockbydir:lock/lock` to the plugins instantiated with `linker`, for Stores driven
/// with `call_async` (`Command::instantiate_async`, `call_run(..).await`).
///
/// The lock component is synchronous code that sleeps while it waits, so every lock call runs
/// on a blocking thread. The plugin is suspended meanwhile and the executor thread runs other
/// tasks. (A sync host function cannot do this: it would block the executor thread for the
/// whole wait.) Calls that end soon (the few filesystem operations of a release, say) run on
/// `wasmtime_wasi::runtime::spawn_blocking`, that is tokio's `spawn_blocking` on the ambient
/// runtime (wasmtime-wasi's own when there is none), the pool wasmtime-wasi runs its own
/// blocking filesystem calls on. Waits (`acquire`) run on a pool of threads of their own,
/// named `lockbydir-wait`, with no cap: however many plugins wait, the release that would end
/// their waits never queues behind them in a full blocking pool. Each waiting plugin instance
/// takes one such thread while it waits.
///
/// If the future running the plugin is dropped while a lock call is under way (a
/// `tokio::time::timeout`, say), the call goes on on its blocking thread until it returns (a
/// wait: until the plugin's patience runs out or it gets the lock); then the plugin's locks
/// are released. Later lock calls of that context trap. Give plugins a
/// [`LockbydirCtxBuilder::wait_deadline`] to bound such waits.
///
/// # Examples
///
/// ```
/// use lockbydir::embed::{self, LockbydirCtx, LockbydirView};
/// use wasmtime::component::{Component, Linker, ResourceTable};
/// use wasmtime::{Engine, Store};
/// use wasmtime_wasi::p2::bindings::Command;
/// use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
///
/// struct Host {
///     wasi: WasiCtx,
///     table: ResourceTable,
///     locks: LockbydirCtx,
/// }
///
/// impl WasiView for Host {
///     fn ctx(&mut self) -> WasiCtxView<'_> {
///         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
///     }
/// }
///
/// impl LockbydirView for Host {
///     fn lockbydir(&mut self) -> &mut LockbydirCtx {
///         &mut self.locks
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let root = std::env::temp_dir().join(format!("lockbydir-doc-async-{}", std::process::id()));
/// # let (lock_dir, work) = (root.join("locks"), root.join("work"));
/// # std::fs::create_dir_all(&lock_dir)?;
/// # std::fs::create_dir_all(&work)?;
/// std::fs::write(work.join("counter"), "0")?;
/// let runtime = lockbydir::RuntimeBuilder::new().build()?;
/// let engine = Engine::default();
/// let mut linker = Linker::<Host>::new(&engine);
/// wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
/// embed::add_to_linker_async(&mut linker)?;
/// let plugin = Component::new(&engine, lockbydir::guests::COUNTER_PLUGIN)?;
///
/// // Two instances at once on one executor thread: each waits for the other's turn.
/// let instance = |label: &str| -> Result<Store<Host>, Box<dyn std::error::Error>> {
///     let args = ["counter", "--lock", "counter", "--counter", "/work/counter",
///                 "--log", "/work/log", "--label", label];
///     let host = Host {
///         wasi: WasiCtx::builder()
///             .args(&args)
///             .preopened_dir(&work, "/work", FsPerms::ReadWrite)?
///             .build(),
///         table: ResourceTable::new(),
///         locks: LockbydirCtx::builder().lock_dir(&lock_dir).build(&runtime)?,
///     };
///     Ok(Store::new(&engine, host))
/// };
/// let run = |mut store: Store<Host>| {
///     let (linker, plugin) = (linker.clone(), plugin.clone());
///     async move {
///         let command = Command::instantiate_async(&mut store, &plugin, &linker).await?;
///         command.wasi_cli_run().call_run(&mut store).await
///     }
/// };
/// let (a, b) = (instance("a")?, instance("b")?);
/// let executor = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let (ra, rb) = executor.block_on(async {
///     let (a, b) = (tokio::spawn(run(a)), tokio::spawn(run(b)));
///     (a.await, b.await)
/// });
/// assert!(ra??.is_ok() && rb??.is_ok());
/// assert_eq!(std::fs::read_to_string(work.join("counter"))?, "20");
/// # std::fs::remove_dir_all(&root)?;
/// # Ok(())
/// # }
/// ```
pub fn add_to_linker_async<T: LockbydirView + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    host::add_async(linker)?;
    v0_1_0::add_async(linker)
}

/// Add the lock interface (every version) and `lockbydir:waiting/waiting@0.1.0` to `linker`,
/// for Stores driven with `run_concurrent`: WASI 0.3 plugins (components that export
/// `wasi:cli/run@0.3.0`), whose tasks wait for locks without blocking each other.
///
/// `waiting.acquire` is a task of the plugin that holds no thread while it waits: between its
/// looks at the lock it awaits the host's change notification (or a timer), so one executor
/// thread serves any number of waits. Cancelling it (the plugin drops the call) withdraws its
/// place in line. The other lock functions run on the thread that drives the Store, as with
/// [`add_to_linker_sync`] (a plugin's `lock.acquire` blocks that thread: use
/// `waiting.acquire`). The same policy applies to both; one wait per handle at a time, so a
/// plugin waits for at most as many locks at once as it may open handles.
///
/// The Engine needs `Config::wasm_component_model_async(true)`; add WASI 0.3
/// (`wasmtime_wasi::p3::add_to_linker`) and WASI 0.2 for the parts of the plugin's standard
/// library that still use it (`wasmtime_wasi::p2::add_to_linker_async`). On etcd a wait
/// awaits etcd's watch of the key ahead, also without a thread.
///
/// # Examples
///
/// ```no_run
/// use lockbydir::embed::{self, LockbydirCtx, LockbydirView};
/// use wasmtime::component::{Component, Linker, ResourceTable};
/// use wasmtime::{Config, Engine, Store};
/// use wasmtime_wasi::p3::bindings::Command;
/// use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
///
/// struct Host {
///     wasi: WasiCtx,
///     table: ResourceTable,
///     locks: LockbydirCtx,
/// }
///
/// impl WasiView for Host {
///     fn ctx(&mut self) -> WasiCtxView<'_> {
///         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
///     }
/// }
///
/// impl LockbydirView for Host {
///     fn lockbydir(&mut self) -> &mut LockbydirCtx {
///         &mut self.locks
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = lockbydir::RuntimeBuilder::new().build()?;
/// let engine = Engine::new(Config::new().wasm_component_model_async(true))?;
/// let mut linker = Linker::<Host>::new(&engine);
/// wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
/// wasmtime_wasi::p3::add_to_linker(&mut linker)?;
/// embed::add_to_linker_concurrent(&mut linker)?;
/// let plugin = Component::from_file(&engine, "tasks.wasm")?;
///
/// let host = Host {
///     wasi: WasiCtx::builder().inherit_stdio().build(),
///     table: ResourceTable::new(),
///     locks: LockbydirCtx::builder().lock_dir("/var/lock/jobs").build(&runtime)?,
/// };
/// // Drive the Store from this thread, on a multi-thread executor: the lock calls that block
/// // (the lock component's file operations) step out of it in place. On a current-thread
/// // executor each such call runs on a thread of its own, which is slower.
/// let executor = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
/// let ran = executor.block_on(async {
///     let mut store = Store::new(&engine, host);
///     let command = Command::instantiate_async(&mut store, &plugin, &linker).await?;
///     store
///         .run_concurrent(async move |store| command.wasi_cli_run().call_run(store).await)
///         .await?
/// })?;
/// assert!(ran.is_ok());
/// # Ok(())
/// # }
/// ```
pub fn add_to_linker_concurrent<T: LockbydirView + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    plugin::Plugin::add_to_linker::<T, HasLocks>(linker, view_concurrent)?;
    old::Plugin::add_to_linker::<T, HasLocks>(linker, view_concurrent)?;
    wait::lockbydir::waiting::waiting::add_to_linker::<T, HasLocks>(linker, view_concurrent)
}

/// [`view`] for a Store driven with `run_concurrent`: the host functions run inside the
/// executor's task, and the backend's blocking calls must leave it.
fn view_concurrent<T: LockbydirView>(t: &mut T) -> PluginLocks<'_> {
    let state = t.lockbydir().state();
    state.leave_async_context();
    PluginLocks(state)
}
