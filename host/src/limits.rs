//! Limits on a running plugin: a wall-clock deadline (enforced through epoch interruption
//! while it runs, and by capping how long it may wait for a lock) and a memory cap.

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
    /// Largest total linear memory, in bytes.
    pub max_memory: Option<usize>,
}

/// Which limit stopped a plugin, in words that name the flag.
pub type LimitHit = String;

/// Enforces the memory cap and records when it was hit.
#[derive(Debug, Default)]
pub struct MemoryCap {
    max: Option<usize>,
    /// Set when a growth past the cap was refused.
    pub hit: Option<LimitHit>,
}

impl MemoryCap {
    /// A cap of `max` bytes (none if `None`).
    pub fn new(max: Option<usize>) -> Self {
        MemoryCap { max, hit: None }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.max {
            Some(max) if desired > max => {
                let hit =
                    format!("its memory limit (--max-memory {max} bytes; it asked for {desired})");
                self.hit = Some(hit.clone());
                Err(wasmtime::Error::msg(format!("plugin exceeded {hit}")))
            }
            _ => Ok(true),
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
                let hit = format!(
                    "its deadline (--deadline {})",
                    crate::duration::display_ms(total.as_millis() as u64)
                );
                on_hit(ctx.data_mut(), hit.clone());
                Err(wasmtime::Error::msg(format!("plugin exceeded {hit}")))
            });
        }
    }
}
