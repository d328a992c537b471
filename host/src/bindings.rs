//! The generated bindings of the lock interface, in one place, and the one type they name
//! from outside the generator: [`LockError`]. Nothing here depends on the rest of the crate
//! but [`crate::handle`].
//!
//! - [`types`]: the values of `lockbydir:lock/types@0.2.0`, generated once; every other
//!   binding below uses these (`with`).
//! - [`provider`]: calling the lock component, which exports `lockbydir:lock/lock@0.2.0`.
//! - [`plugin`]: serving `lockbydir:lock/lock@0.2.0` to plugins.
//! - [`waiting`]: serving `lockbydir:waiting/waiting@0.1.0`, the waits that block no thread.
//! - [`v0_1_0`]: serving `lockbydir:lock/lock@0.1.0` (`wit-published/0.1.0`) to plugins built
//!   against it, through one adapter (`crate::embed::v0_1_0`).
//!
//! Only synchronous host functions are generated: Stores driven with `call_async` get the same
//! functions run on a blocking thread (each version's `add_async`, with
//! `crate::embed::async_linker`'s machinery).

pub use crate::handle::PluginLock;

/// A lock call's failure as the host functions of the import return it: the interface's
/// error value, handed to the plugin, or a host failure, which traps it.
#[derive(Debug)]
pub enum LockError {
    /// The interface's error value.
    Value(types::Error),
    /// A failure of the host or of the lock component: the plugin's call traps.
    Trap(wasmtime::Error),
}

#[allow(missing_docs)]
mod generated_types {
    wasmtime::component::bindgen!({
        path: "wit",
        interfaces: "import lockbydir:lock/types@0.2.0;",
        imports: { default: trappable },
        trappable_error_type: { "lockbydir:lock/types.error" => crate::bindings::LockError },
        additional_derives: [PartialEq, Eq],
    });
}

/// The values of `lockbydir:lock/types@0.2.0` (documented in `wit/types.wit`).
pub use generated_types::lockbydir::lock::types;

/// Calls into the lock component (world `provider` of the private package in `wit-host/`:
/// the lock interface, and the steps of a wait that the host drives).
#[allow(missing_docs)]
pub mod provider {
    wasmtime::component::bindgen!({
        path: "wit-host",
        world: "lockbydir:lock-steps/provider",
        with: { "lockbydir:lock/types": crate::bindings::types },
    });
}

/// `lockbydir:lock/lock@0.2.0` for plugins.
#[allow(missing_docs)]
pub mod plugin {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "plugin",
        imports: { default: trappable },
        trappable_error_type: { "lockbydir:lock/types.error" => crate::bindings::LockError },
        with: {
            "lockbydir:lock/types": crate::bindings::types,
            "lockbydir:lock/lock.lock": crate::bindings::PluginLock,
        },
    });
}

/// `lockbydir:waiting/waiting@0.1.0` (`wit-published/waiting-0.1.0`): the lock interface's
/// `acquire` as an `async func`, for plugins run with `run_concurrent`. Its `lock` is the
/// plugin's handle of `lockbydir:lock/lock@0.2.0`.
#[allow(missing_docs)]
pub mod waiting {
    wasmtime::component::bindgen!({
        path: "wit-published/waiting-0.1.0",
        world: "lockbydir:waiting/async-plugin",
        imports: { default: trappable },
        trappable_error_type: { "lockbydir:lock/types.error" => crate::bindings::LockError },
        with: {
            "lockbydir:lock/types": crate::bindings::types,
            "lockbydir:lock/lock": crate::bindings::plugin::lockbydir::lock::lock,
        },
    });
}

/// `lockbydir:lock/lock@0.1.0` for plugins built against it.
#[allow(missing_docs)]
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "wit-published/0.1.0",
        world: "plugin",
        imports: { default: trappable },
        with: { "lockbydir:lock/lock.lock": crate::bindings::PluginLock },
    });
}
