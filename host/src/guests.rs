//! The components this crate ships prebuilt in `component/` and embeds: building this crate
//! needs no wasm32 target and runs no nested cargo. `scripts/build-lock-component` rebuilds
//! them reproducibly from the workspace's `guest/`, `protocol/`, `wit/` and
//! `example-plugins/`; a test fails when they are older than those sources.

/// The lock component (`guest/`), embedded so the `lockbydir` binary works on its own.
pub const LOCK_COMPONENT: &[u8] = include_bytes!("../component/lockbydir-lock.wasm");

/// The example sleeper plugin (`example-plugins/src/bin/sleeper.rs`), used by `demo`.
pub const SLEEPER_PLUGIN: &[u8] = include_bytes!("../component/sleeper.wasm");

/// The example counter plugin (`example-plugins/src/bin/counter.rs`), used by `demo`.
pub const COUNTER_PLUGIN: &[u8] = include_bytes!("../component/counter.wasm");

/// The benchmark plugin (`example-plugins/src/bin/bench.rs`), used by `bench`.
pub const BENCH_PLUGIN: &[u8] = include_bytes!("../component/bench.wasm");

/// The `tasks` plugin (`async-plugins/`), a WASI 0.3 plugin whose tasks wait without
/// blocking, used by `bench`.
pub const TASKS_PLUGIN: &[u8] = include_bytes!("../component/tasks.wasm");

/// The SHA-256 of [`LOCK_COMPONENT`] in lowercase hex, as `sha256sum` prints it for the file
/// `lockbydir component --out` writes; `lockbydir --version` names it.
pub fn lock_component_sha256() -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(LOCK_COMPONENT)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
