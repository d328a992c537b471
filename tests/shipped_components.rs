//! The components the host crate ships prebuilt (host/component/) are built from the current
//! sources: host/component/SOURCES.sha256 records the SHA-256 of every input
//! (guest/, protocol/, wit/, example-plugins/, the toolchain, the locked dependencies they
//! build from) and of the shipped files; this test recomputes it. When a source changes, it
//! fails naming the changed inputs and the command that refreshes the components.
//!
//! `scripts/build-lock-component` writes the file through this test
//! (`LOCKBYDIR_WRITE_COMPONENT_SOURCES=1`), so there is one way of computing it.
//! `.ci/run` checks the other half: that the sources build exactly the shipped bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Files and directories (every file below) the shipped components are built from, relative
/// to the workspace. A path that does not exist contributes nothing.
const INPUTS: &[&str] = &[
    "guest",
    "protocol/Cargo.toml",
    "protocol/src",
    "wit",
    "wit-host",
    "wit-published/waiting-0.1.0",
    "example-plugins",
    "async-plugins",
    "plugin",
    "rust-toolchain.toml",
];

/// The workspace packages whose locked dependencies (transitively) go into the components.
const ROOT_PACKAGES: &[&str] = &[
    "lockbydir-guest",
    "lockbydir-example-plugins",
    "lockbydir-async-plugins",
];

/// The shipped files, relative to the workspace.
const SHIPPED: &[&str] = &[
    "host/component/lockbydir-lock.wasm",
    "host/component/counter.wasm",
    "host/component/sleeper.wasm",
    "host/component/bench.wasm",
];

const RECORD: &str = "host/component/SOURCES.sha256";

const HEADER: &str = "\
# The inputs host/component/ was built from and the built files, as sha256sum prints them.
# Written by scripts/build-lock-component; tests/shipped_components.rs checks it.
";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ lives in the workspace")
        .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn files_below(root: &Path, rel: &str, out: &mut Vec<String>) {
    let path = root.join(rel);
    if path.is_dir() {
        let entries = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("read directory {}: {e}", path.display()));
        for entry in entries {
            let name = entry.unwrap().file_name();
            let name = name.to_str().expect("source file names are UTF-8");
            files_below(root, &format!("{rel}/{name}"), out);
        }
    } else if path.is_file() {
        out.push(rel.to_owned());
    }
}

/// The `name version checksum` lines of the Cargo.lock packages the root packages depend on,
/// transitively, sorted: a dependency update elsewhere in the workspace does not count.
fn locked_dependencies(workspace: &Path) -> String {
    let path = workspace.join("Cargo.lock");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let lock: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let packages = lock["package"].as_array().expect("Cargo.lock has packages");
    let field = |p: &toml::Value, key: &str| {
        p.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    // A dependency is written "name" (one version in the lock) or "name version [(source)]".
    let find = |dep: &str| -> &toml::Value {
        let mut words = dep.split(' ');
        let name = words.next().unwrap_or_default();
        let version = words.next();
        packages
            .iter()
            .find(|p| field(p, "name") == name && version.is_none_or(|v| field(p, "version") == v))
            .unwrap_or_else(|| panic!("Cargo.lock names {dep:?} but has no such package"))
    };
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&toml::Value> = ROOT_PACKAGES.iter().map(|name| find(name)).collect();
    while let Some(package) = todo.pop() {
        let line = format!(
            "{} {} {}",
            field(package, "name"),
            field(package, "version"),
            field(package, "checksum")
        );
        if !seen.insert(line) {
            continue;
        }
        if let Some(deps) = package.get("dependencies").and_then(|d| d.as_array()) {
            todo.extend(deps.iter().filter_map(|d| d.as_str()).map(find));
        }
    }
    seen.into_iter().map(|l| l + "\n").collect()
}

/// The record as it should read now.
fn record_now(workspace: &Path) -> String {
    let mut files = Vec::new();
    for input in INPUTS {
        files_below(workspace, input, &mut files);
    }
    files.sort();
    let mut out = String::from(HEADER);
    for file in files
        .iter()
        .map(String::as_str)
        .chain(SHIPPED.iter().copied())
    {
        let path = workspace.join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        out.push_str(&format!("{}  {file}\n", hex(&bytes)));
    }
    out.push_str(&format!(
        "{}  Cargo.lock (the packages {} build from)\n",
        hex(locked_dependencies(workspace).as_bytes()),
        ROOT_PACKAGES.join(", ")
    ));
    out
}

/// `hash` by name, for saying which inputs changed.
fn by_name(record: &str) -> BTreeMap<&str, &str> {
    record
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once("  "))
        .map(|(hash, name)| (name, hash))
        .collect()
}

#[test]
fn the_shipped_components_are_built_from_the_current_sources() {
    let workspace = workspace();
    let now = record_now(&workspace);
    let record_path = workspace.join(RECORD);
    if std::env::var_os("LOCKBYDIR_WRITE_COMPONENT_SOURCES").is_some() {
        std::fs::write(&record_path, &now)
            .unwrap_or_else(|e| panic!("write {}: {e}", record_path.display()));
        return;
    }
    let recorded = std::fs::read_to_string(&record_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", record_path.display()));
    if recorded == now {
        return;
    }
    let (old, new) = (by_name(&recorded), by_name(&now));
    let changed: Vec<&str> = old
        .keys()
        .chain(new.keys())
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|name| old.get(name) != new.get(name))
        .collect();
    panic!(
        "host/component/ is older than its sources: changed since it was built: {}\n\
         Refresh it with `scripts/build-lock-component` and commit host/component/.",
        changed.join(", ")
    );
}

#[test]
fn the_record_covers_the_protocol_the_wit_and_the_locked_dependencies() {
    // The record covers the protocol's code and the locked dependencies: editing either one
    // changes the record, so the test above cannot pass on stale components.
    let workspace = workspace();
    let now = record_now(&workspace);
    let names = by_name(&now);
    assert!(names.contains_key("protocol/src/lib.rs"), "{now}");
    assert!(names.contains_key("guest/Cargo.toml"), "{now}");
    assert!(names.contains_key("wit/lock.wit"), "{now}");
    assert!(names.keys().any(|n| n.starts_with("Cargo.lock")), "{now}");
    let deps = locked_dependencies(&workspace);
    assert!(
        deps.lines().any(|l| l.starts_with("wit-bindgen ")),
        "{deps}"
    );
    assert!(
        !deps.lines().any(|l| l.starts_with("wasmtime ")),
        "the host's dependencies are not the components' inputs:\n{deps}"
    );
}
