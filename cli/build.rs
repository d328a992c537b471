//! Records the git commit the CLI is built from (`LOCKBYDIR_COMMIT`, "unknown" outside a git
//! checkout) for `lockbydir --version`.

#[path = "build/git.rs"]
mod git;

use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest_dir.parent().expect("cli/ lives in the workspace");
    let commit = match git::head(workspace) {
        Some(head) => {
            // Rerun only when HEAD may have moved (the files `git::head` names), not always.
            for file in &head.watch {
                println!("cargo:rerun-if-changed={}", file.display());
            }
            head.hash
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=LOCKBYDIR_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/git.rs");
}
