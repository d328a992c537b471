//! Generated bindings for the two worlds of `wit/lock.wit`, in one place.
//!
//! - [`lock_component`]: the world the lock component exports; the host calls into it.
//! - [`plugin`]: the world plugins import; the host implements it by forwarding each call to
//!   a lock component instance (see [`crate::plugin_locks`]).
//! - [`plugin_async`]: the same world for async embedders (see [`crate::embed`]).

/// Bindings to call the lock component's exports (generated; documented in `wit/lock.wit`).
#[allow(missing_docs)]
pub mod lock_component {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "lock-component",
    });
}

/// Bindings to provide `lockbydir:lock/lock` to plugins (generated; documented in
/// `wit/lock.wit`).
#[allow(missing_docs)]
pub mod plugin {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: trappable },
        with: {
            "lockbydir:lock/lock.lock": crate::plugin_locks::PluginLock,
        },
    });
}

/// Bindings to provide `lockbydir:lock/lock` to plugins whose Store is driven with wasmtime's
/// `call_async` ([`crate::embed::add_to_linker_async`]): the same world, with async host
/// functions, sharing the plugin's lock resource type with [`plugin`].
#[allow(missing_docs)]
pub mod plugin_async {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: async | trappable },
        with: {
            "lockbydir:lock/lock.lock": crate::plugin_locks::PluginLock,
        },
    });
}

/// The lock interface's types as the lock component exports them. The host's Rust API uses
/// these.
pub use lock_component::exports::lockbydir::lock::lock as wit;
