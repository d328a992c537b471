//! Limits on a running plugin: a wall-clock deadline (enforced through epoch interruption
//! while it runs, and by capping how long it may wait for a lock), a memory cap shared with
//! the plugin's lock component, and how many handles its stores may hold.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

/// How long a tick of the engine's epoch is; deadlines are checked this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Epoch ticks that never arrive in practice (centuries), for stores without a deadline.
pub const NO_DEADLINE_TICKS: u64 = 1 << 40;

/// Limits for one plugin.
#[derive(Clone, Debug, Default)]
pub struct PluginLimits {
    /// Stop the plugin this long after it starts.
    pub deadline: Option<Duration>,
    /// Largest total linear memory, in bytes: the plugin's and its lock component's together.
    pub max_memory: Option<usize>,
}

/// Which limit stopped a plugin. Its `Display` says it in the library's words; a command
/// line can name its own flags from the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitHit {
    /// Its deadline ([`PluginLimits::deadline`]) passed.
    Deadline(Duration),
    /// A memory growth was refused ([`PluginLimits::max_memory`]).
    Memory {
        /// The limit, in bytes.
        max: usize,
        /// Whose memory asked to grow.
        whose: Whose,
        /// How many bytes it asked for in all (the plugin) or more (the lock component).
        asked: usize,
        /// How many bytes the plugin and its lock component used together then.
        used: usize,
    },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Deadline(d) => write!(f, "its deadline of {} ms", d.as_millis()),
            LimitHit::Memory {
                max,
                whose: Whose::Plugin,
                asked,
                used,
            } => write!(
                f,
                "its memory limit of {max} bytes (it asked for {asked}, with {used} in use by \
                 it and its lock component)"
            ),
            LimitHit::Memory {
                max,
                whose: Whose::LockComponent,
                asked,
                used,
            } => write!(
                f,
                "its memory limit of {max} bytes, shared with its lock component (which asked \
                 for {asked} more, with {used} in use)"
            ),
        }
    }
}

/// The most lock handles a plugin may be allowed (`--max-handles`): wasmtime's tables are
/// raised to hold that many, and each handle costs the host a few hundred bytes outside
/// every linear memory (its lock name, at most 120 bytes of label, table slots).
pub const MAX_HANDLES_HONOURED: usize = 1_000_000;

/// Handles a store may hold besides lock handles (WASI streams, descriptors, pollables):
/// wasmtime's own default cap, which stores without lock handles keep.
pub const OTHER_HANDLES: usize = 100_000;

/// How long before a plugin's deadline its lock waits end, so that it can still react to
/// `busy`.
pub const WAIT_MARGIN: Duration = Duration::from_millis(100);

/// One memory budget shared by a plugin and the lock component that serves it: the sum of
/// their linear memories may not pass `--max-memory`, so nothing a plugin asks its lock
/// component to keep escapes its limit. Cloning shares the budget.
#[derive(Clone, Debug, Default)]
pub struct MemoryBudget(Arc<Mutex<Budget>>);

#[derive(Debug, Default)]
struct Budget {
    max: Option<usize>,
    used: usize,
    hit: Option<LimitHit>,
}

impl MemoryBudget {
    /// A budget of `max` bytes (unlimited if `None`).
    pub fn new(max: Option<usize>) -> Self {
        MemoryBudget(Arc::new(Mutex::new(Budget {
            max,
            used: 0,
            hit: None,
        })))
    }

    /// The limit that was reached, if a growth was refused.
    pub fn hit(&self) -> Option<LimitHit> {
        self.state().hit.clone()
    }

    /// A limiter that charges the memories of one store (the plugin's, or its lock
    /// component's: `whose` says which, in messages) to this budget.
    pub fn limiter(&self, whose: Whose) -> MemoryCap {
        MemoryCap {
            budget: self.clone(),
            whose,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Budget> {
        // A panic while holding this lock leaves plain numbers behind: still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whose memory a [`MemoryCap`] limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whose {
    /// The plugin's own.
    Plugin,
    /// The lock component serving the plugin.
    LockComponent,
}

/// Enforces a [`MemoryBudget`] on one store. A refused growth makes `memory.grow` fail (as
/// in any wasm engine at its limit); a Rust program then aborts, and the host reports the
/// limit.
#[derive(Clone, Debug)]
pub struct MemoryCap {
    budget: MemoryBudget,
    whose: Whose,
}

impl MemoryCap {
    /// No limit at all (for lock services that serve no plugin).
    pub fn unlimited() -> Self {
        MemoryBudget::new(None).limiter(Whose::LockComponent)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let mut budget = self.budget.state();
        let more = desired.saturating_sub(current);
        let total = budget.used.saturating_add(more);
        match budget.max {
            Some(max) if total > max => {
                let used = budget.used;
                budget.hit = Some(LimitHit::Memory {
                    max,
                    whose: self.whose,
                    asked: match self.whose {
                        Whose::Plugin => desired,
                        Whose::LockComponent => more,
                    },
                    used,
                });
                Ok(false)
            }
            _ => {
                budget.used = total;
                Ok(true)
            }
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far past any honest plugin.
        Ok(desired <= 1_000_000)
    }
}

/// Make `store` stop with a trap once `deadline` has passed (checked every epoch tick while
/// wasm runs); `on_hit` records it. Without a deadline, the store never stops for time.
pub fn apply_deadline<T: 'static>(
    store: &mut Store<T>,
    deadline: Option<(Instant, Duration)>,
    on_hit: fn(&mut T, LimitHit),
) {
    match deadline {
        None => store.set_epoch_deadline(NO_DEADLINE_TICKS),
        Some((at, total)) => {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |mut ctx| {
                if Instant::now() < at {
                    return Ok(UpdateDeadline::Continue(1));
                }
                let hit = LimitHit::Deadline(total);
                on_hit(ctx.data_mut(), hit.clone());
                Err(wasmtime::Error::msg(format!("plugin exceeded {hit}")))
            });
        }
    }
}
