//! Builds the guest components once: the lock component (`guest/`) and the example plugins
//! (`example-plugins/`), for `wasm32-wasip2`, with one nested `cargo build` into OUT_DIR.
//!
//! The host embeds the lock component and the example plugins; tests find them through the
//! `LOCKBYDIR_GUESTS_DIR` environment variable set here. If the `wasm32-wasip2` target is
//! missing (rustup's auto-install may be off), it is added with `rustup target add`, or the
//! build fails saying exactly that.
//!
//! The directory is also passed to the crates that depend on this one (`links`: their build
//! scripts see it as `DEP_LOCKBYDIR_GUESTS_DIR`): the CLI's tests run the example plugins.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// The components this build produces, by file name in the nested target dir.
const ARTIFACTS: &[&str] = &[
    "lockbydir_guest.wasm",
    "counter.wasm",
    "sleeper.wasm",
    "hostile.wasm",
    "bench.wasm",
    "counter-v0-1-0.wasm",
];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ lives in the workspace")
        .to_owned();

    for dir in [
        "guest",
        "protocol",
        "example-plugins",
        "compat",
        "wit",
        "wit-published",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.toml").display()
    );

    ensure_target();

    let target_dir = out_dir.join("guests");
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&workspace)
        .args(["build", "--release", "--target", TARGET])
        .args(["-p", "lockbydir-guest", "-p", "lockbydir-example-plugins"])
        .args(["-p", "lockbydir-compat-plugins"])
        // A target dir of its own, so the nested cargo never waits for the outer one's lock.
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_BUILD_BUILD_DIR", &target_dir)
        // Small components: no debug info in what gets embedded.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        // The outer build's flags and wrappers (clippy-driver under `cargo clippy`) are for
        // the host crates; the guests are linted by their own clippy run in .ci/run.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not start the nested cargo build ({cmd:?}): {e}"));
    assert!(
        status.success(),
        "building the guest components for {TARGET} failed ({status}); the error is above"
    );

    let built = target_dir.join(TARGET).join("release");
    for artifact in ARTIFACTS {
        let from = built.join(artifact);
        fs::copy(&from, out_dir.join(artifact))
            .unwrap_or_else(|e| panic!("copy {} into OUT_DIR: {e}", from.display()));
        rerun_if_deps_change(&from);
    }
    println!("cargo:rustc-env=LOCKBYDIR_GUESTS_DIR={}", out_dir.display());
    println!("cargo::metadata=DIR={}", out_dir.display());
}

/// Make sure the standard library for wasm32-wasip2 is installed, adding it with rustup if not.
fn ensure_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |root: &Path| root.join("lib/rustlib").join(TARGET).join("lib").is_dir();
    if sysroot.as_deref().is_some_and(installed) {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing; running `rustup target add {TARGET}`");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match added {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` failed \
             ({status}); install it yourself with `rustup target add {TARGET}`, then build again"
        ),
        Err(e) => panic!(
            "the {TARGET} target is not installed and rustup could not be run ({e}); \
             install the target for this toolchain (`rustup target add {TARGET}`), then build again"
        ),
    }
}

/// Rebuild when any source file the artifact was built from changes (cargo's dep-info file).
fn rerun_if_deps_change(artifact: &Path) {
    let Ok(deps) = fs::read_to_string(artifact.with_extension("d")) else {
        return;
    };
    for line in deps.lines() {
        let Some((_, files)) = line.split_once(": ") else {
            continue;
        };
        let mut parts = files.split_whitespace();
        while let Some(part) = parts.next() {
            let mut file = part.to_owned();
            while file.ends_with('\\') {
                file.pop();
                file.push(' ');
                file.push_str(parts.next().unwrap_or_default());
            }
            println!("cargo:rerun-if-changed={file}");
        }
    }
}
