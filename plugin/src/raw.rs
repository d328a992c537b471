//! The generated bindings of `lockbydir:lock@0.2.0` (world `plugin`), for what the rest of
//! this crate does not wrap: [`list_locks`](lockbydir::lock::lock::list_locks), the
//! [`queue`](lockbydir::lock::lock::queue) of a lock, the host's clock
//! ([`now_ms`](lockbydir::lock::lock::now_ms)), and handles used directly.
//!
//! These are the interface's own types, as `wit_bindgen::generate!` makes them; they change
//! with the interface's version, while the rest of this crate keeps its API.
//!
//! # Examples
//!
//! ```no_run
//! use lockbydir_plugin::raw::lockbydir::lock::lock::list_locks;
//!
//! for lock in list_locks().map_err(lockbydir_plugin::Error::from)? {
//!     println!("{}", lock.name);
//! }
//! # Ok::<(), lockbydir_plugin::Error>(())
//! ```
#![allow(missing_docs)]

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});
