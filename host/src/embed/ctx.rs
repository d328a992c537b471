//! The lock context an embedder keeps in its Store data, and its builder.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;

use crate::display::escape;
use crate::limits::{MAX_HANDLES_HONOURED, MemoryBudget, MemoryCap, Whose};
use crate::lock_service::{LockService, ServiceLimits};
use crate::plugin_locks::{PluginLocks, PluginLocksCtx};
use crate::policy::{DEFAULT_MAX_HANDLES, DEFAULT_MAX_NEW_LOCKS, LockPolicy, NamePattern};
use crate::runtime::Runtime;

use super::BuildError;

/// Where the locks live. The one place a backend is chosen: each backend is one variant and
/// one builder method.
#[derive(Clone, Debug)]
enum Backend {
    /// A lock directory on a filesystem, served by the lock component.
    LockDir(PathBuf),
}

/// Builds a [`LockbydirCtx`]: where the locks live, what the plugin may do with them, and
/// the limits of the lock component that serves it.
///
/// The defaults are those of `lockbydir run`: any lock name, any timeout, any number held,
/// at most [`DEFAULT_MAX_HANDLES`] handles open and [`DEFAULT_MAX_NEW_LOCKS`] lockdirs
/// created, no memory cap, and waits are not announced.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use lockbydir::embed::{BuildError, LockbydirCtx};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("lockbydir-doc-builder-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let runtime = lockbydir::RuntimeBuilder::new().build()?;
/// let ctx = LockbydirCtx::builder()
///     .lock_dir(&dir)
///     .name("worker")
///     .allow_lock("job-*")
///     .max_timeout(Duration::from_secs(60))
///     .max_held(1)
///     .max_lock_component_memory(64 << 20)
///     .build(&runtime)?;
/// # drop(ctx);
///
/// // A bad pattern, or a lock directory that is not there, is a typed error.
/// let err = LockbydirCtx::builder().lock_dir(&dir).allow_lock("a/b").build(&runtime);
/// assert!(matches!(err, Err(BuildError::Pattern(_))));
/// let err = LockbydirCtx::builder().lock_dir(dir.join("missing")).build(&runtime);
/// assert!(matches!(err, Err(BuildError::LockDir { .. })));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct LockbydirCtxBuilder {
    backend: Option<Backend>,
    name: String,
    announce_waits: bool,
    allowed: Vec<String>,
    max_timeout: Option<Duration>,
    max_held: Option<usize>,
    max_handles: usize,
    max_new_locks: Option<usize>,
    max_memory: Option<usize>,
    wait_deadline: Option<Instant>,
}

impl Default for LockbydirCtxBuilder {
    fn default() -> Self {
        LockbydirCtxBuilder {
            backend: None,
            name: "plugin".to_owned(),
            announce_waits: false,
            allowed: Vec::new(),
            max_timeout: None,
            max_held: None,
            max_handles: DEFAULT_MAX_HANDLES,
            max_new_locks: Some(DEFAULT_MAX_NEW_LOCKS),
            max_memory: None,
            wait_deadline: None,
        }
    }
}

impl LockbydirCtxBuilder {
    /// A builder with the defaults above and no backend yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the locks in `dir`, an existing directory (the plugin never sees it: only the
    /// lock component does).
    pub fn lock_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.backend = Some(Backend::LockDir(dir.into()));
        self
    }

    /// The plugin's name in messages (policy refusals, wait announcements, locks released
    /// for it) [default: `plugin`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Announce on stderr, once per wait, that the plugin waits for a lock and for whom, as
    /// `lockbydir run` does without `--quiet`; also say which locks were released for it
    /// when the context is dropped.
    pub fn announce_waits(mut self, yes: bool) -> Self {
        self.announce_waits = yes;
        self
    }

    /// Allow lock names matching `pattern` (`*` matches any run of characters); repeatable.
    /// Without any, every valid lock name is allowed. Checked by [`Self::build`].
    pub fn allow_lock(mut self, pattern: impl Into<String>) -> Self {
        self.allowed.push(pattern.into());
        self
    }

    /// The longest lock timeout the plugin may request.
    pub fn max_timeout(mut self, max: Duration) -> Self {
        self.max_timeout = Some(max);
        self
    }

    /// How many locks the plugin may hold at once.
    pub fn max_held(mut self, max: usize) -> Self {
        self.max_held = Some(max);
        self
    }

    /// How many lock handles the plugin may have open at once (at most
    /// [`MAX_HANDLES_HONOURED`]).
    pub fn max_handles(mut self, max: usize) -> Self {
        self.max_handles = max;
        self
    }

    /// How many lockdirs (locks that did not exist before) the plugin may create; `None`:
    /// no cap. Lockdirs are permanent, so without a cap a plugin can fill the lock directory.
    pub fn max_new_locks(mut self, max: Option<usize>) -> Self {
        self.max_new_locks = max;
        self
    }

    /// The most linear memory the lock component serving this plugin may use, in bytes (its
    /// record of the plugin's handles grows with them). A refused growth traps the lock
    /// component, and with it the plugin's lock call.
    pub fn max_lock_component_memory(mut self, bytes: usize) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Lock waits end by `at` (the plugin's own deadline, say), whatever patience it asked
    /// for: a wait that reaches it returns `busy`.
    pub fn wait_deadline(mut self, at: Instant) -> Self {
        self.wait_deadline = Some(at);
        self
    }

    /// Check the policy and instantiate the lock component (compiled once in `runtime`) on
    /// the backend.
    pub fn build(self, runtime: &Runtime) -> Result<LockbydirCtx, BuildError> {
        let allowed = self
            .allowed
            .iter()
            .map(|p| NamePattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_handles > MAX_HANDLES_HONOURED {
            return Err(BuildError::TooManyHandles {
                given: self.max_handles,
                max: MAX_HANDLES_HONOURED,
            });
        }
        let policy = LockPolicy {
            allowed,
            max_timeout_ms: self
                .max_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            max_held: self.max_held,
            max_handles: self.max_handles,
            max_new_locks: self.max_new_locks,
        };
        let memory = match self.max_memory {
            Some(max) => MemoryBudget::new(Some(max)).limiter(Whose::LockComponent),
            None => MemoryCap::unlimited(),
        };
        let limits = ServiceLimits {
            memory,
            lock_handles: self.max_handles,
        };
        let service = match self.backend.ok_or(BuildError::NoBackend)? {
            Backend::LockDir(dir) => LockService::with_limits(runtime, &dir, limits)?,
        };
        let locks = PluginLocksCtx::new(
            Box::new(service),
            &self.name,
            !self.announce_waits,
            policy,
            self.wait_deadline,
        );
        let mut table = ResourceTable::new();
        table.set_max_capacity(table.max_capacity().saturating_add(self.max_handles));
        Ok(LockbydirCtx {
            state: Some(Box::new(State {
                locks,
                table,
                name: self.name,
                announce: self.announce_waits,
            })),
        })
    }
}

/// The state behind one plugin's `lockbydir:lock/lock` import: its own lock component
/// instance, its policy, and its open lock handles. Keep one per plugin Store, in the Store's
/// data, and lend it out through [`super::LockbydirView`].
///
/// The plugin's lock handles live in a resource table of this context's own (not the
/// embedder's), so that an async host can hand the whole context to a blocking thread while
/// the plugin waits ([`super::add_to_linker_async`]).
///
/// Dropping it releases every lock the plugin still holds, so others need not wait for the
/// lock's timeout (as [`LockbydirCtx::release_all`] does).
pub struct LockbydirCtx {
    /// `None` only while an async call runs on a blocking thread, and for good once such a
    /// call was cancelled.
    pub(super) state: Option<Box<State>>,
}

pub(super) struct State {
    locks: PluginLocksCtx,
    table: ResourceTable,
    name: String,
    announce: bool,
}

/// What a call on a context whose async call was cancelled gets: a trap.
pub(super) const GONE: &str = "the lockbydir context is gone: an earlier async lock call of \
    this plugin was cancelled (its future dropped); its locks are released when that call returns";

impl State {
    pub(super) fn view(&mut self) -> PluginLocks<'_> {
        PluginLocks {
            ctx: &mut self.locks,
            table: &mut self.table,
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        for lock in self.locks.release_all() {
            if self.announce {
                eprintln!(
                    "lockbydir: plugin `{}` ended while holding lock `{}`; released it",
                    escape(&self.name),
                    escape(&lock)
                );
            }
        }
    }
}

impl LockbydirCtx {
    /// A builder: see [`LockbydirCtxBuilder`].
    pub fn builder() -> LockbydirCtxBuilder {
        LockbydirCtxBuilder::new()
    }

    /// Release every lock the plugin still holds and close its handles (for a context kept
    /// after its plugin ended); returns the names of the locks released. Dropping the
    /// context does the same.
    pub fn release_all(&mut self) -> Vec<String> {
        match self.state.as_mut() {
            Some(state) => state.locks.release_all(),
            None => Vec::new(),
        }
    }

    /// The lock import's sync view (the sync linker never takes the state away).
    pub(super) fn sync_view(&mut self) -> PluginLocks<'_> {
        self.state.as_deref_mut().expect(GONE).view()
    }
}
