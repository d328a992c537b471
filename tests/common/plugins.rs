//! The wasm plugins the tests run, built by the tests themselves (an embedder's build of the
//! host crate builds none): one `cargo build --release --target wasm32-wasip2` of
//! [`PACKAGES`] into a target dir of its own, once per test run. A file lock makes parallel
//! test binaries wait for one build instead of racing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The wasm packages the tests build, each with every binary it has (one component per
/// binary, named after it). Add a package here and its components appear in [`dir`].
pub const PACKAGES: &[&str] = &[
    "lockbydir-example-plugins",
    "lockbydir-compat-plugins",
    "lockbydir-async-plugins",
];

const TARGET: &str = "wasm32-wasip2";

/// The directory that holds the built plugins (`counter.wasm`, `hostile.wasm`, ...), built
/// on first use.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build)
}

fn build() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ lives in the workspace");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-plugins");
    std::fs::create_dir_all(&target_dir).unwrap();
    let lock_path = target_dir.join("tests-build.lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET]);
    for package in PACKAGES {
        cmd.args(["-p", package]);
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_BUILD_BUILD_DIR", &target_dir)
        // Small plugins: no debug info (their trap backtraces name wasm functions anyway).
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        // The flags and wrappers of the build that made this test (clippy, coverage) are for
        // the native crates.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "building the test plugins for {TARGET} failed ({}); if the target is missing, \
         `rustup target add {TARGET}`:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    drop(lock);
    target_dir.join(TARGET).join("release")
}
