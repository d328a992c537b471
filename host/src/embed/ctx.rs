//! The lock context an embedder keeps in its Store data, and its builder.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lockbydir_protocol::entry::kept_label;
use wasmtime::component::ResourceTable;

use crate::backend::{Backend, Limits, OutsideAsync, Place};
use crate::error::Error;
use crate::handle::LockId;
use crate::limits::{MAX_HANDLES_HONOURED, MemoryBudget, MemoryCap, WAIT_MARGIN, Whose};
use crate::policy::{DEFAULT_MAX_HANDLES, DEFAULT_MAX_NEW_LOCKS, LockPolicy, NamePattern};
use crate::report::{Event, Reporter};
use crate::runtime::Runtime;
use crate::types::Options;

use super::BuildError;

/// Builds a [`LockbydirCtx`]: where the locks live, what the plugin may do with them, and
/// the limits of the backend that serves it.
///
/// The defaults are those of `lockbydir run`: any lock name, any lease, any number held, at
/// most [`DEFAULT_MAX_HANDLES`] handles open and [`DEFAULT_MAX_NEW_LOCKS`] locks created, no
/// memory cap, and nothing reported.
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
///     .on_event(std::sync::Arc::new(|event| eprintln!("host: {event}")))
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
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct LockbydirCtxBuilder {
    place: Option<Place>,
    name: String,
    reporter: Option<Reporter>,
    allowed: Vec<String>,
    max_timeout: Option<Duration>,
    max_held: Option<usize>,
    max_handles: usize,
    max_new_locks: Option<usize>,
    max_memory: Option<usize>,
    memory: Option<MemoryCap>,
    policy: Option<LockPolicy>,
    wait_deadline: Option<Instant>,
}

impl Default for LockbydirCtxBuilder {
    fn default() -> Self {
        LockbydirCtxBuilder {
            place: None,
            name: "plugin".to_owned(),
            reporter: None,
            allowed: Vec::new(),
            max_timeout: None,
            max_held: None,
            max_handles: DEFAULT_MAX_HANDLES,
            max_new_locks: Some(DEFAULT_MAX_NEW_LOCKS),
            max_memory: None,
            memory: None,
            policy: None,
            wait_deadline: None,
        }
    }
}

impl LockbydirCtxBuilder {
    /// A builder with the defaults above and no place for the locks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the locks in `dir`, an existing directory (the plugin never sees it: only the
    /// lock component does).
    pub fn lock_dir(self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.place(Place::LockDir(dir.into()))
    }

    /// Keep the locks in `place`: a lock directory, or a cluster.
    pub fn place(mut self, place: Place) -> Self {
        self.place = Some(place);
        self
    }

    /// The plugin's name in events (policy refusals, waits, locks released for it)
    /// [default: `plugin`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Tell `reporter` what happens to the plugin's locks (see [`Event`]): that it waits for a
    /// lock and for whom, that the policy refused a request, which locks were released for it
    /// when it ended. Without one, nothing is told.
    pub fn on_event(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Allow lock names matching `pattern` (`*` matches any run of characters); repeatable.
    /// Without any, every valid lock name is allowed. Checked by [`Self::build`].
    pub fn allow_lock(mut self, pattern: impl Into<String>) -> Self {
        self.allowed.push(pattern.into());
        self
    }

    /// The longest lease the plugin may ask for.
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

    /// How many locks that did not exist before the plugin may create; `None`: no cap.
    /// Lockdirs are permanent, so without a cap a plugin can fill the lock directory.
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

    /// Charge the lock component's memory to `cap` (a budget shared with the plugin).
    pub(crate) fn memory_cap(mut self, cap: MemoryCap) -> Self {
        self.memory = Some(cap);
        self
    }

    /// Use `policy` as it is, instead of the allowed names and caps given to this builder.
    pub(crate) fn policy(mut self, policy: LockPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Lock waits end by `at` (the plugin's own deadline, say), whatever wait it asked for,
    /// shortly before it: a wait that reaches it returns `busy`.
    pub fn wait_deadline(mut self, at: Instant) -> Self {
        self.wait_deadline = Some(at);
        self
    }

    /// Check the policy and open the backend (for a lock directory: instantiate the lock
    /// component, compiled once in `runtime`).
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
        let policy = self.policy.unwrap_or(LockPolicy {
            allowed,
            max_timeout_ms: self
                .max_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            max_held: self.max_held,
            max_handles: self.max_handles,
            max_new_locks: self.max_new_locks,
        });
        let memory = match (self.memory, self.max_memory) {
            (Some(cap), _) => cap,
            (None, Some(max)) => MemoryBudget::new(Some(max)).limiter(Whose::LockComponent),
            (None, None) => MemoryCap::unlimited(),
        };
        let limits = Limits {
            memory,
            lock_handles: policy.max_handles,
        };
        let place = self.place.ok_or(BuildError::NoBackend)?;
        let backend = place.open_with_limits(runtime, limits)?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(table.max_capacity().saturating_add(policy.max_handles));
        Ok(LockbydirCtx {
            state: Some(Box::new(State {
                backend: OutsideAsync {
                    backend,
                    active: false,
                },
                table,
                plugin: self.name,
                reporter: self.reporter,
                policy,
                wait_until: self.wait_deadline,
                open: BTreeMap::new(),
                created: 0,
            })),
        })
    }
}

/// The state behind one plugin's `lockbydir:lock/lock` import: its own backend (for a lock
/// directory, a lock component instance of its own), its policy, and its open lock handles.
/// Keep one per plugin Store, in the Store's data, and lend it out through
/// [`super::LockbydirView`].
///
/// The plugin's lock handles live in a resource table of this context's own (not the
/// embedder's), so that an async host can hand the whole context to a blocking thread while
/// the plugin waits ([`super::add_to_linker_async`]).
///
/// Dropping it releases every lock the plugin still holds, so others need not wait for the
/// lock's lease to run out (as [`LockbydirCtx::release_all`] does).
pub struct LockbydirCtx {
    /// `None` only while an async call runs on a blocking thread, and for good once such a
    /// call was cancelled.
    pub(super) state: Option<Box<State>>,
}

/// What a call on a context whose async call was cancelled gets: a trap.
pub(super) const GONE: &str = "the lockbydir context is gone: an earlier async lock call of \
    this plugin was cancelled (its future dropped); its locks are released when that call returns";

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
            Some(state) => state.release_all(),
            None => Vec::new(),
        }
    }

    /// The state, for the host functions (the sync linker never takes it away).
    pub(super) fn state(&mut self) -> &mut State {
        self.state.as_deref_mut().expect(GONE)
    }
}

/// What the host functions run on: one plugin's lock state, borrowed from its Store data.
pub struct PluginLocks<'a>(pub(super) &'a mut State);

/// One plugin's lock state: what the host functions of the import work on.
pub(crate) struct State {
    /// Leaves the async context at each call once [`State::leave_async_context`] was called.
    pub(super) backend: OutsideAsync,
    /// The plugin's lock handles (`lock` resources).
    pub(super) table: ResourceTable,
    plugin: String,
    reporter: Option<Reporter>,
    pub(super) policy: LockPolicy,
    /// Lock waits may not outlast this instant (the plugin's deadline).
    wait_until: Option<Instant>,
    /// Every open handle, by resource rep.
    pub(super) open: BTreeMap<u32, Tracked>,
    /// How many locks this plugin's acquisitions created (see [`LockPolicy::max_new_locks`]).
    pub(super) created: usize,
}

/// What the host keeps about one of the plugin's handles.
pub(super) struct Tracked {
    pub(super) lock: LockId,
    pub(super) name: String,
    /// Its lock was seen to exist: acquiring through this handle creates nothing.
    pub(super) exists: bool,
    /// The fence of this handle's acquisition while it holds its lock: with the name, what
    /// it takes to release the lock without the handle.
    pub(super) fence: Option<u64>,
    /// The options the plugin opened it with (label cut to what a lockdir keeps).
    pub(super) options: Options,
    /// The wait the backend's handle has (the plugin's, capped by its deadline).
    pub(super) wait_ms: Option<u64>,
    /// An async wait (`waiting.acquire`) on this handle is in progress; cleared when it ends
    /// or is dropped.
    pub(super) waiting: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl State {
    /// Tell the reporter, if there is one.
    pub(super) fn report(&self, event: Event<'_>) {
        if let Some(reporter) = &self.reporter {
            reporter(&event);
        }
    }

    /// From now on, every call of the backend leaves the async context first (for a Store
    /// driven with `run_concurrent`, whose host functions run inside the executor's task).
    pub(super) fn leave_async_context(&mut self) {
        self.backend.active = true;
    }

    /// The plugin's name.
    pub(super) fn plugin(&self) -> &str {
        &self.plugin
    }

    /// A policy refusal: told to the reporter, and the error value the plugin gets.
    pub(super) fn deny(&self, rule: String) -> Error {
        self.report(Event::Denied {
            plugin: &self.plugin,
            rule: &rule,
        });
        Error::Lock {
            lock: String::new(),
            place: self.backend.place().to_owned(),
            error: crate::types::Error::Denied(rule),
        }
    }

    /// How many locks the plugin holds.
    pub(super) fn held_count(&self) -> usize {
        self.open.values().filter(|t| t.fence.is_some()).count()
    }

    /// The options the plugin asked for, its label cut to what a lockdir keeps.
    pub(super) fn kept(options: Options) -> Options {
        let holder = options.holder.map(|h| kept_label(&h).to_owned());
        Options { holder, ..options }
    }

    /// The wait a wait that starts now may have: the plugin's own, ended [`WAIT_MARGIN`]
    /// before its deadline.
    pub(super) fn wait_now(&self, requested_ms: Option<u64>) -> Option<u64> {
        match self.wait_until {
            None => requested_ms,
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                let left_ms = left.saturating_sub(WAIT_MARGIN).as_millis() as u64;
                Some(requested_ms.unwrap_or(u64::MAX).min(left_ms))
            }
        }
    }

    /// After the plugin ended (exit, trap, limit): release every lock it still holds and close
    /// its handles, so others need not wait for the lease to run out. Returns what was
    /// released (each is also reported).
    ///
    /// If the backend can no longer be called for a handle (the lock component trapped, or
    /// ran out of memory or handles), its lock is released without it, by the name and fence
    /// it was granted.
    pub(super) fn release_all(&mut self) -> Vec<String> {
        let mut released = Vec::new();
        for (_, t) in std::mem::take(&mut self.open) {
            if let Some(fence) = t.fence {
                match self.backend.release(t.lock) {
                    Ok(_) => released.push(t.name.clone()),
                    // It had already lost the lock: nothing to give back.
                    Err(Error::Lock { .. }) => {}
                    Err(_) => match self.backend.release_by_fence(&t.name, fence) {
                        Ok(true) => released.push(t.name.clone()),
                        Ok(false) => {}
                        Err(error) => self.report(Event::NotReleased {
                            plugin: &self.plugin,
                            lock: &t.name,
                            error: &error,
                        }),
                    },
                }
            }
            // Closing also runs the component's destructor; a trap here changes nothing more.
            let _ = self.backend.close(t.lock);
        }
        for lock in &released {
            self.report(Event::Released {
                plugin: &self.plugin,
                lock,
            });
        }
        released
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.release_all();
    }
}
