//! Running a plugin: an ordinary `wasi:cli/command` component that may import
//! `lockbydir:lock/lock`, in a sandbox that sees only the directories granted to it.

use std::path::PathBuf;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::{Command, CommandPre};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::backend::{BackendFactory, LockBackend};
use crate::error::Error;
use crate::limits::{self, LimitHit, MemoryBudget, MemoryCap, OTHER_HANDLES, PluginLimits, Whose};
use crate::lock_service::{LockService, ServiceLimits};
use crate::plugin_locks::{self, PluginLocks, PluginLocksCtx, PluginLocksView};
use crate::policy::LockPolicy;
use crate::runtime::Runtime;

/// What a plugin may see and how it is started.
#[derive(Clone, Debug, Default)]
pub struct PluginConfig {
    /// The plugin's name in messages (and `argv[0]`).
    pub name: String,
    /// Its arguments (after `argv[0]`).
    pub args: Vec<String>,
    /// Its environment: only these variables.
    pub env: Vec<(String, String)>,
    /// Directories granted to it: host path, and the path it sees.
    pub dirs: Vec<(PathBuf, String)>,
    /// The lock directory its lock import works in (not visible to the plugin itself).
    pub lock_dir: PathBuf,
    /// Do not announce waits on stderr.
    pub quiet: bool,
    /// Give it the host's stdin (otherwise its stdin is empty).
    pub stdin: bool,
    /// What it may do with locks.
    pub policy: LockPolicy,
    /// Its deadline and memory cap.
    pub limits: PluginLimits,
}

/// A plugin's store data: its WASI state and its lock import's state.
pub struct PluginCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    locks: PluginLocksCtx,
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

impl PluginLocksView for PluginCtx {
    fn plugin_locks(&mut self) -> PluginLocks<'_> {
        PluginLocks {
            ctx: &mut self.locks,
            table: &mut self.table,
        }
    }
}

/// Runs plugins: holds the linker with WASI and the lock import, built once.
#[derive(Clone)]
pub struct PluginRunner {
    runtime: Runtime,
    linker: Linker<PluginCtx>,
    /// Where plugins' locks live, if not in the lock directory's lock component.
    backend: Option<BackendFactory>,
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
        plugin_locks::add_to_linker(&mut linker).map_err(link)?;
        Ok(PluginRunner {
            runtime: runtime.clone(),
            linker,
            backend: None,
        })
    }

    /// Serve every plugin's lock import from a backend `open` makes for each run, instead of
    /// a lock component in [`PluginConfig::lock_dir`].
    pub fn with_backend(mut self, open: BackendFactory) -> Self {
        self.backend = Some(open);
        self
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
        let pre = self.linker.instantiate_pre(component).map_err(|reason| Error::Component {
            what: format!(
                "plugin `{name}` needs an import lockbydir does not provide (it provides WASI 0.2 \
                 and lockbydir:lock/lock@0.1.0, nothing else)"
            ),
            reason,
        })?;
        CommandPre::new(pre).map_err(|reason| Error::Component {
            what: format!(
                "plugin `{name}` is not a wasi:cli/command component (build it as a program with \
                 `fn main` for wasm32-wasip2)"
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
        let service_limits = ServiceLimits {
            memory: budget.limiter(Whose::LockComponent),
            lock_handles: max_handles,
        };
        let service: Box<dyn LockBackend> = match &self.backend {
            Some(open) => open()?,
            None => Box::new(LockService::with_limits(
                &self.runtime,
                &config.lock_dir,
                service_limits,
            )?),
        };
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
            locks: PluginLocksCtx::new(
                service,
                &config.name,
                config.quiet,
                config.policy.clone(),
                deadline.map(|(at, _)| at),
            ),
            memory: budget.limiter(Whose::Plugin),
            stopped_by: None,
        };
        let command = self.prepare(component, &config.name)?;
        let mut store = Store::new(self.runtime.engine(), ctx);
        store.limiter(|ctx| &mut ctx.memory);
        store.set_max_component_handles(max_handles.saturating_add(OTHER_HANDLES));
        limits::apply_deadline(&mut store, deadline, |ctx, hit| ctx.stopped_by = Some(hit));
        let command: Command =
            command
                .instantiate(&mut store)
                .map_err(|reason| Error::Component {
                    what: format!("instantiate plugin `{}`", config.name),
                    reason,
                })?;
        let ran = command.wasi_cli_run().call_run(&mut store);
        let ctx = store.data_mut();
        for name in ctx.locks.release_all() {
            eprintln!(
                "lockbydir: plugin `{}` ended while holding lock `{}`; released it",
                config.name,
                crate::display::escape(&name)
            );
        }
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
