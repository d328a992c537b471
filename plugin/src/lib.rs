//! Named locks for WebAssembly plugins written in Rust: the plugin side of lockbydir.
//!
//! A plugin is an ordinary WASI 0.2 program (`fn main`, built for `wasm32-wasip2`) that
//! imports the interface `lockbydir:lock/lock@0.2.0`. This crate holds the bindings of that
//! interface and wraps them in the API of `fd-lock` and lockbydir's native guards: a
//! [`Lock`] opened by name (with [`LockOptions`] where the defaults do not suit), a
//! [`Guard`] that releases the lock when dropped and carries the fencing token, and
//! contention as a value ([`Attempt::Busy`]), never as an error.
//!
//! The plugin runs under any host that serves the interface: `lockbydir run --dir LOCKS
//! plugin.wasm`, a host embedding the `lockbydir` crate, or any other implementation of
//! `lockbydir:lock/lock@0.2.0`. Each host decides where the locks live; the plugin only
//! names them.
//!
//! # Examples
//!
//! ```no_run
//! use lockbydir_plugin::Lock;
//!
//! let mut lock = Lock::new("nightly-backup")?;
//! let guard = lock.lock()?; // waits as long as it takes
//! println!("holding it with fence {}", guard.fence());
//! guard.release()?; // or drop the guard
//! # Ok::<(), lockbydir_plugin::Error>(())
//! ```
//!
//! The examples here are `no_run`: they call the host, so they run only inside a component
//! host. They are compiled by `cargo test --doc -p lockbydir-plugin` (natively, where the
//! imports are never called).
#![deny(missing_docs)]

mod convert;
mod error;
mod guard;
mod lock;
mod options;
mod state;

pub mod raw;

pub use error::Error;
pub use guard::{Attempt, Guard, Released};
pub use lock::Lock;
pub use options::{Fairness, LockOptions};
pub use state::{Holder, LockState};
