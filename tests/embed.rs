//! `examples/embed/`: wasmtime hosts of their own (sync, and tokio with both plugin instances
//! on one executor thread) that give the counter plugin lockbydir locks through
//! `lockbydir::embed`, taking turns with `lockbydir exec` loops on one lock.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{EXEC_INCREMENT, Scratch, assert_exclusive, cache_dir, count, guest};

/// The example host binary `name`. `cargo test --release` at the top builds it with the other
/// default members, so it lies next to the `lockbydir` binary, built with the same features
/// (a separate `cargo build -p` resolves features apart and would compile wasmtime again);
/// when the tests run without it (`-p lockbydir-cli`), it is built here.
fn example_binary(name: &str) -> PathBuf {
    let beside = Path::new(env!("CARGO_BIN_EXE_lockbydir")).with_file_name(name);
    if beside.exists() {
        return beside;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args(["build", "--release", "-p", "lockbydir-embed-example"])
        .args(["--bins", "--message-format=json-render-diagnostics"])
        .stderr(Stdio::inherit());
    if std::env::var_os("CARGO_NET_OFFLINE").is_some() {
        build.arg("--offline");
    }
    let out = build.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "building examples/embed failed (the error is above)"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no executable named {name}"))
}

/// A shell loop of `rounds` `lockbydir exec` increments of `work/counter` under lock `shared`.
fn exec_loop(locks: &Path, work: &Path, rounds: usize, label: &str) -> Child {
    let exe = env!("CARGO_BIN_EXE_lockbydir");
    let script = format!(
        "for i in $(seq {rounds}); do \"{exe}\" --locks \"$0\" exec --quiet shared -- sh -c '{EXEC_INCREMENT}' sh \"$1\" {label} || exit 1; done"
    );
    Command::new("sh")
        .env("LOCKBYDIR_CACHE_DIR", cache_dir())
        .arg("-c")
        .arg(script)
        .arg(locks)
        .arg(work)
        .spawn()
        .unwrap()
}

/// The example host `name` running `plugin` (two instances, `rounds` each) and two exec loops
/// on one lock: the counter is exact and no two holds overlap.
fn takes_turns_with_exec(name: &str, plugin: &Path) {
    let host = example_binary(name);
    let scratch = Scratch::new(name);
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let rounds = 15;
    let mut children = vec![
        exec_loop(&locks, &work, rounds, "exec-0"),
        exec_loop(&locks, &work, rounds, "exec-1"),
    ];
    children.push(
        Command::new(&host)
            .env("LOCKBYDIR_CACHE_DIR", cache_dir())
            .arg(plugin)
            .args([&locks, &work])
            .arg(rounds.to_string())
            .spawn()
            .unwrap(),
    );
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a contender failed");
    }
    assert_eq!(count(&work.join("counter")), 4 * rounds);
    assert_exclusive(&work.join("log"), 4 * rounds);
}

#[test]
fn a_sync_embedding_host_takes_turns_with_exec() {
    takes_turns_with_exec("embed-sync", &guest("counter.wasm"));
}

#[test]
fn an_async_embedding_host_takes_turns_with_exec() {
    takes_turns_with_exec("embed-async", &guest("counter.wasm"));
}

/// A WASI 0.3 plugin's tasks (2·rounds of them in one instance) wait beside two exec loops.
#[test]
fn a_concurrent_embedding_host_s_tasks_take_turns_with_exec() {
    takes_turns_with_exec("embed-concurrent", &guest("tasks.wasm"));
}

/// The JavaScript counter plugin (examples/plugins/js, built with componentize-js by the test)
/// in the sync embedding host, taking turns with exec: an embedder's host runs it as it runs
/// a Rust plugin.
#[test]
fn an_embedding_host_runs_the_javascript_plugin() {
    match common::languages::js_plugin() {
        Ok(plugin) => takes_turns_with_exec("embed-sync", &plugin),
        Err(why) => eprintln!("embed: skipped: {why}"),
    }
}
