//! What `lockbydir -V` and `--version` say: the version, the git commit the binary was built
//! from (by `cli/build.rs`), the wasmtime it runs on, and the embedded lock component's hash.

/// The commit, or "unknown" for a build outside a git checkout.
const COMMIT: &str = env!("LOCKBYDIR_COMMIT");

/// `-V`: the version and the commit's first 12 digits.
pub fn short() -> String {
    let commit = COMMIT.get(..12).unwrap_or(COMMIT);
    format!("{} (commit {commit})", env!("CARGO_PKG_VERSION"))
}

/// `--version`: one fact a line.
pub fn long() -> String {
    format!(
        "{}\ncommit: {COMMIT}\nwasmtime: {}\nlock component: sha256 {} (built in; `lockbydir component --out FILE` writes it)",
        env!("CARGO_PKG_VERSION"),
        wasmtime_environ::VERSION,
        lockbydir::guests::lock_component_sha256(),
    )
}
