//! Running a plugin: an ordinary `wasi:cli/command` component that may import
//! `lockbydir:lock/lock`, in a sandbox that sees only the directories granted to it. A WASI
//! 0.3 command (it exports `wasi:cli/run@0.3.0`) runs on an executor of its own with
//! `run_concurrent`, and may also import `lockbydir:waiting/waiting`: its tasks wait for locks
//! without blocking each other.

use std::path::PathBuf;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::sync::{Command, CommandPre};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::backend::Place;
use crate::embed::{self, BuildError, LockbydirCtx, LockbydirView};
use crate::error::Error;
use crate::limits::{self, LimitHit, MemoryBudget, MemoryCap, OTHER_HANDLES, PluginLimits, Whose};
use crate::plugin_clock::{self, PreciseClock};
use crate::policy::LockPolicy;
use crate::report::Reporter;
use crate::runtime::Runtime;

/// What a plugin may see and how it is started.
#[derive(Clone)]
pub struct PluginConfig {
    /// The plugin's name in messages (and `argv[0]`).
    pub name: String,
    /// Its arguments (after `argv[0]`).
    pub args: Vec<String>,
    /// Its environment: only these variables.
    pub env: Vec<(String, String)>,
    /// Directories granted to it: host path, and the path it sees.
    pub dirs: Vec<(PathBuf, String)>,
    /// Where its locks live (a lock directory is not visible to the plugin itself).
    pub place: Place,
    /// Told what happens to its locks (waits, refusals, locks released for it).
    pub reporter: Option<Reporter>,
    /// Give it the host's stdin (otherwise its stdin is empty).
    pub stdin: bool,
    /// What it may do with locks.
    pub policy: LockPolicy,
    /// Its deadline and memory cap.
    pub limits: PluginLimits,
}

impl PluginConfig {
    /// A plugin named `name` whose locks are in `place`, with no arguments, environment or
    /// directories, the default policy and no limits.
    pub fn new(name: impl Into<String>, place: Place) -> Self {
        PluginConfig {
            name: name.into(),
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            place,
            reporter: None,
            stdin: false,
            policy: LockPolicy::default(),
            limits: PluginLimits::default(),
        }
    }
}

/// A plugin's store data: its WASI state and its lock import's state.
pub struct PluginCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    locks: LockbydirCtx,
    memory: MemoryCap,
    stopped_by: Option<LimitHit>,
}

impl PluginCtx {
    /// The plugin's memory budget is shared with its lock component: whichever of the two
    /// was refused, the limit is the plugin's.
    fn limit_hit(&mut self, budget: &MemoryBudget) -> Option<LimitHit> {
        self.stopped_by.take().or_else(|| budget.hit())
    }
}

impl WasiView for PluginCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LockbydirView for PluginCtx {
    fn lockbydir(&mut self) -> &mut LockbydirCtx {
        &mut self.locks
    }
}

/// Runs plugins: holds the linkers with WASI and the lock import (every version), built once:
/// one for WASI 0.2 commands, one for WASI 0.3 commands (with the waiting interface).
#[derive(Clone)]
pub struct PluginRunner {
    runtime: Runtime,
    linker: Linker<PluginCtx>,
    concurrent: Linker<PluginCtx>,
}

/// The kinds of command a plugin can be.
enum Kind {
    /// Exports `wasi:cli/run@0.2.x`: its lock calls block it.
    Wasi02,
    /// Exports `wasi:cli/run@0.3.x`: run with `run_concurrent`.
    Wasi03,
}

/// What kind of command `component` is, by the `run` it exports (WASI 0.2 if neither, so that
/// the message about a missing `run` is the one every plugin gets).
fn kind(component: &Component, runtime: &Runtime) -> Kind {
    let ty = component.component_type();
    let exports_p3 = ty
        .exports(runtime.engine())
        .any(|(name, _)| name.starts_with("wasi:cli/run@0.3."));
    if exports_p3 {
        Kind::Wasi03
    } else {
        Kind::Wasi02
    }
}

impl PluginRunner {
    /// A runner on `runtime`'s engine.
    pub fn new(runtime: &Runtime) -> Result<Self, Error> {
        let mut linker = Linker::new(runtime.engine());
        let link = |reason| Error::Component {
            what: "link the plugin imports".into(),
            reason,
        };
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
        // Sleeps to the OS timer's precision, not tokio's whole milliseconds.
        plugin_clock::shadow_monotonic_clock(&mut linker, |ctx: &mut PluginCtx| {
            PreciseClock(WasiClocksCtxView {
                ctx: ctx.wasi.clocks(),
                table: &mut ctx.table,
            })
        })
        .map_err(link)?;
        embed::add_to_linker_sync(&mut linker).map_err(link)?;
        let mut concurrent = Linker::new(runtime.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut concurrent).map_err(link)?;
        wasmtime_wasi::p3::add_to_linker(&mut concurrent).map_err(link)?;
        embed::add_to_linker_concurrent(&mut concurrent).map_err(link)?;
        Ok(PluginRunner {
            runtime: runtime.clone(),
            linker,
            concurrent,
        })
    }

    /// The runtime plugins run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Check a plugin's imports and exports: imports must all be provided, and it must export
    /// `wasi:cli/run`.
    pub fn prepare(
        &self,
        component: &Component,
        name: &str,
    ) -> Result<CommandPre<PluginCtx>, Error> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|reason| Error::Component {
                what: format!(
                    "plugin `{}` needs an import lockbydir does not provide (it provides WASI 0.2 \
                 and lockbydir:lock/lock@0.2.0 and @0.1.0, nothing else)",
                    crate::display::escape(name)
                ),
                reason,
            })?;
        CommandPre::new(pre).map_err(|reason| Error::Component {
            what: format!(
                "plugin `{}` is not a wasi:cli/command component (build it as a program with \
                 `fn main` for wasm32-wasip2)",
                crate::display::escape(name)
            ),
            reason,
        })
    }

    /// [`PluginRunner::prepare`] for a WASI 0.3 command.
    fn prepare_concurrent(
        &self,
        component: &Component,
        name: &str,
    ) -> Result<wasmtime_wasi::p3::bindings::CommandPre<PluginCtx>, Error> {
        let pre = self
            .concurrent
            .instantiate_pre(component)
            .map_err(|reason| Error::Component {
                what: format!(
                    "plugin `{}` needs an import lockbydir does not provide (to WASI 0.3 \
                     commands it provides WASI 0.3 and 0.2, lockbydir:lock/lock@0.2.0 and \
                     @0.1.0, and lockbydir:waiting/waiting@0.1.0, nothing else)",
                    crate::display::escape(name)
                ),
                reason,
            })?;
        wasmtime_wasi::p3::bindings::CommandPre::new(pre).map_err(|reason| Error::Component {
            what: format!(
                "plugin `{}` exports wasi:cli/run@0.3 but is not a WASI 0.3 command",
                crate::display::escape(name)
            ),
            reason,
        })
    }

    /// Run `component` to completion on this thread; returns its exit code.
    ///
    /// However it ends (exit, trap, a limit), every lock it still holds is released at once.
    pub fn run(&self, component: &Component, config: &PluginConfig) -> Result<i32, Error> {
        let started = Instant::now();
        let deadline = config.limits.deadline.map(|d| (started + d, d));
        // Everything the plugin makes its lock component hold counts against its memory.
        let budget = MemoryBudget::new(config.limits.max_memory);
        let max_handles = config.policy.max_handles;
        let mut locks = LockbydirCtx::builder()
            .place(config.place.clone())
            .name(&config.name)
            .policy(config.policy.clone())
            .memory_cap(budget.limiter(Whose::LockComponent));
        if let Some(reporter) = &config.reporter {
            locks = locks.on_event(reporter.clone());
        }
        if let Some((at, _)) = deadline {
            locks = locks.wait_deadline(at);
        }
        let locks = locks.build(&self.runtime).map_err(|e| match e {
            BuildError::Host(e) => e,
            BuildError::LockDir { path, message } => Error::LockDir { path, message },
            other => Error::Component {
                what: format!("set up the lock import of plugin `{}`", config.name),
                reason: wasmtime::Error::msg(other.to_string()),
            },
        })?;
        let mut wasi = WasiCtx::builder();
        // No stdin unless asked for: what the user types is not the plugin's to read.
        if config.stdin {
            wasi.inherit_stdin();
        }
        wasi.allow_blocking_current_thread(true)
            .inherit_stdout()
            .inherit_stderr()
            .arg(&config.name)
            .args(&config.args);
        for (k, v) in &config.env {
            wasi.env(k, v);
        }
        for (host, guest) in &config.dirs {
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(|e| Error::GrantedDir {
                    path: host.clone(),
                    message: format!("cannot open it: {e:#}"),
                })?;
        }
        let mut table = ResourceTable::new();
        // Room for every lock handle it may open, besides wasmtime-wasi's default for the rest.
        table.set_max_capacity(table.max_capacity().saturating_add(max_handles));
        let ctx = PluginCtx {
            wasi: wasi.build(),
            table,
            locks,
            memory: budget.limiter(Whose::Plugin),
            stopped_by: None,
        };
        let mut store = Store::new(self.runtime.engine(), ctx);
        store.limiter(|ctx| &mut ctx.memory);
        store.set_max_component_handles(max_handles.saturating_add(OTHER_HANDLES));
        limits::apply_deadline(&mut store, deadline, |ctx, hit| ctx.stopped_by = Some(hit));
        let instantiated = |reason| Error::Component {
            what: format!("instantiate plugin `{}`", config.name),
            reason,
        };
        let ran = match kind(component, &self.runtime) {
            Kind::Wasi02 => {
                let command = self.prepare(component, &config.name)?;
                let command: Command = command.instantiate(&mut store).map_err(instantiated)?;
                // Its thread runs it alone: its sleeps may end on it (see `plugin_clock`).
                plugin_clock::on_own_thread(|| command.wasi_cli_run().call_run(&mut store))
            }
            Kind::Wasi03 => {
                let command = self.prepare_concurrent(component, &config.name)?;
                // One worker drives the timers and the I/O; the plugin runs on this thread,
                // where its blocking lock calls can step out of the executor in place.
                let executor = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("lockbydir-plugin-io")
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Component {
                        what: format!("start an executor for plugin `{}`", config.name),
                        reason: e.into(),
                    })?;
                executor.block_on(async {
                    let command = command
                        .instantiate_async(&mut store)
                        .await
                        .map_err(instantiated)?;
                    let ran = store
                        .run_concurrent(async move |store| {
                            command.wasi_cli_run().call_run(store).await
                        })
                        .await;
                    Ok::<_, Error>(ran.and_then(|ran| ran))
                })?
            }
        };
        let ctx = store.data_mut();
        // Whatever it still holds goes back now (each release is reported).
        ctx.locks.release_all();
        let limit = ctx.limit_hit(&budget);
        match ran {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match (e.downcast_ref::<I32Exit>(), limit) {
                (Some(exit), _) => Ok(exit.0),
                (None, Some(limit)) => Err(Error::Limit {
                    plugin: config.name.clone(),
                    limit,
                }),
                (None, None) => Err(Error::Component {
                    what: format!("plugin `{}` trapped", config.name),
                    reason: e,
                }),
            },
        }
    }
}
