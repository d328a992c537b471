//! lockbydir's host library: locks made only of directory operations, for sandboxed
//! WebAssembly plugins and your own Rust code, served on wasmtime.
//!
//! - [`Runtime`]: the engine and the compiled lock component, with an on-disk cache of
//!   compiled code ([`cache`]).
//! - [`backend`]: where the locks live, behind one [`Backend`] trait: a lock directory
//!   ([`backend::LockDirBackend`], the lock component) or an etcd cluster (feature `etcd`);
//!   [`Place`] chooses one.
//! - [`embed`]: the `lockbydir:lock/lock` import for your own wasmtime host (a context in your
//!   Store data, `add_to_linker_sync` / `add_to_linker_async`), serving every published
//!   version of the interface.
//! - [`PluginRunner`]: runs `wasi:cli/command` plugins in a sandbox, on [`embed`].
//! - [`policy`] and [`limits`]: what a plugin may do with locks, and its deadline and memory.
//! - [`types`]: the interface's values; [`Error`]: what can go wrong; [`report`]: what the
//!   lock import tells the host (the library prints nothing).
//!
//! # Examples
//!
//! ```
//! use lockbydir::{Backend, Place, RuntimeBuilder};
//! use lockbydir::types::{AcquireOutcome, Options};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("lockbydir-doc-lib-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let runtime = RuntimeBuilder::new().build()?;
//! let mut locks = Place::LockDir(dir.clone()).open(&runtime)?;
//! let bed = locks.open("bed", &Options::default())?;
//! if let AcquireOutcome::Acquired(grant) = locks.acquire(bed)? {
//!     println!("sleeping with fence {}", grant.fence);
//!     locks.release(bed)?;
//! }
//! locks.close(bed)?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod backend;
mod bindings;
pub mod cache;
mod display;
pub mod embed;
mod error;
pub mod guests;
mod handle;
pub mod limits;
pub mod plugin;
mod plugin_clock;
pub mod policy;
pub mod report;
pub mod runtime;
pub mod types;

pub use backend::{Backend, Place};
pub use display::{escape, is_unsafe_char};
pub use error::{Error, describe};
pub use handle::{LockId, PluginLock};
pub use limits::PluginLimits;
pub use plugin::{PluginConfig, PluginRunner};
pub use policy::{LockPolicy, NamePattern};
pub use runtime::{Runtime, RuntimeBuilder};
