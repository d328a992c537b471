//! lockbydir's host library: runs the lock component and sandboxed plugins on wasmtime, and
//! gives your own wasmtime host the lock import ([`embed`]). The `lockbydir` command line is a
//! crate of its own (`lockbydir-cli`, in `cli/`), so this crate's tree holds no clap and no
//! benchmark code.
//!
//! - [`Runtime`]: the engine and the compiled lock component (embedded, or from a file), with
//!   an on-disk cache of compiled code ([`cache`]).
//! - [`LockService`]: one lock component instance whose only preopen is the lock directory;
//!   the host's own Rust API to locks.
//! - [`PluginRunner`]: runs `wasi:cli/command` plugins whose `lockbydir:lock/lock` import is
//!   forwarded to a lock service of their own ([`plugin_locks`]).
//! - [`embed`]: the lock import for your own wasmtime host (a context in your Store data,
//!   `add_to_linker_sync` / `add_to_linker_async`), in the style of `wasmtime-wasi-keyvalue`.
//! - The lock component's sleeps are precise to well under 100 µs (not tokio's 1 ms ticks)
//!   and end early when a lock in their directory is released in this process (`wakeup`).

#![warn(missing_docs)]

pub mod backend;
pub mod bindings;
pub mod cache;
mod convert;
pub mod display;
pub mod duration;
pub mod embed;
pub mod error;
pub mod grants;
pub mod guests;
pub mod holder_label;
pub mod intervals;
pub mod limits;
pub mod lock_service;
pub mod plugin;
pub mod plugin_locks;
pub mod policy;
pub mod policy_file;
pub mod runtime;
pub mod size;
pub mod waiting;
mod wakeup;
mod watch;
mod watched_stat;
// The etcd backend (`--features etcd`).
#[cfg(feature = "etcd")]
pub mod etcd;

pub use backend::{LockBackend, Locks};
pub use bindings::wit;
pub use error::Error;
pub use limits::PluginLimits;
pub use lock_service::{LockHandle, LockService};
pub use plugin::{PluginConfig, PluginRunner};
pub use policy::{LockPolicy, NamePattern};
pub use runtime::{Runtime, RuntimeBuilder};
