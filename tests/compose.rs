//! `lockbydir compose PLUGIN.wasm -o OUT.wasm`: the result carries the lock component and runs
//! on a host that knows nothing of lockbydir (wasmtime-py, installed by the test, through
//! examples/compose/run.py), taking turns with `lockbydir exec` on one lock directory; and
//! what it says about inputs it cannot compose and outputs it cannot write.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::{
    EXEC_INCREMENT, Scratch, assert_exclusive, cache_dir, count, guest, languages, lockbydir,
    output, stderr,
};

/// `lockbydir compose PLUGIN -o OUT` (the lock directory is not used).
fn compose(scratch: &Scratch, plugin: &Path, out: &Path) -> std::process::Output {
    output(
        lockbydir(&scratch.join("unused-locks"))
            .arg("compose")
            .arg(plugin)
            .arg("-o")
            .arg(out),
    )
}

/// A failed compose: its exit code and message, and no output file left behind.
fn refused(scratch: &Scratch, plugin: &Path, out: &Path) -> (i32, String) {
    let o = compose(scratch, plugin, out);
    assert!(
        !o.status.success(),
        "compose of {} succeeded",
        plugin.display()
    );
    let text = stderr(&o);
    let leftovers: Vec<String> = scratch
        .tree()
        .into_iter()
        .filter(|p| p.contains(".lockbydir-compose-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    (o.status.code().unwrap(), text)
}

#[test]
fn compose_says_what_it_cannot_compose_and_why() {
    let scratch = Scratch::new("compose-errors");
    let out = scratch.join("out.wasm");

    let missing = scratch.join("no-such-plugin.wasm");
    let (code, text) = refused(&scratch, &missing, &out);
    assert_eq!(code, 66, "{text}");
    assert!(
        text.contains(&format!("cannot read the plugin {}", missing.display()))
            && text.contains("No such file or directory"),
        "{text}"
    );

    let not_wasm = scratch.join("notes.txt");
    std::fs::write(&not_wasm, "not wasm").unwrap();
    let (code, text) = refused(&scratch, &not_wasm, &out);
    assert_eq!(code, 65, "{text}");
    assert!(
        text.contains(&format!(
            "{} is not a valid WebAssembly component",
            not_wasm.display()
        )),
        "{text}"
    );

    let core = scratch.join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let (code, text) = refused(&scratch, &core, &out);
    assert_eq!(code, 65, "{text}");
    assert!(
        text.contains("is a core WebAssembly module, not a component")
            && text.contains("wasm32-wasip2"),
        "{text}"
    );

    // The lock component itself imports WASI only.
    let (code, text) = refused(&scratch, &common::shipped_lock_component(), &out);
    assert_eq!(code, 65, "{text}");
    assert!(
        text.contains("imports no lock interface (lockbydir:lock/lock@0.2.0)")
            && text.contains("wasi:filesystem/preopens"),
        "{text}"
    );

    let (code, text) = refused(&scratch, &guest("counter-v0-1-0.wasm"), &out);
    assert_eq!(code, 65, "{text}");
    assert!(
        text.contains("imports lockbydir:lock/lock@0.1.0")
            && text.contains("lockbydir component --wit-dir")
            && text.contains("lockbydir run"),
        "{text}"
    );

    assert!(!out.exists(), "a failed compose wrote {}", out.display());
}

#[test]
fn compose_never_replaces_the_plugin_and_names_an_unwritable_output() {
    let scratch = Scratch::new("compose-output");
    let plugin = scratch.join("counter.wasm");
    std::fs::copy(guest("counter.wasm"), &plugin).unwrap();
    let original = std::fs::read(&plugin).unwrap();

    let link = scratch.join("link.wasm");
    std::os::unix::fs::symlink(&plugin, &link).unwrap();
    let dotted = scratch.0.join(".").join("counter.wasm");
    for out in [&plugin, &link, &dotted] {
        let (code, text) = refused(&scratch, &plugin, out);
        assert_eq!(code, 64, "{text}");
        assert!(
            text.contains(&format!(
                "the output {} is the plugin itself",
                out.display()
            )),
            "{text}"
        );
        assert_eq!(
            std::fs::read(&plugin).unwrap(),
            original,
            "the plugin changed"
        );
    }

    let nowhere = scratch.join("no-such-dir/out.wasm");
    let (code, text) = refused(&scratch, &plugin, &nowhere);
    assert_eq!(code, 73, "{text}");
    assert!(
        text.contains(&format!(
            "cannot write the composed plugin to {}",
            nowhere.display()
        )) && text.contains("No such file or directory"),
        "{text}"
    );

    // An existing output is replaced.
    let out = scratch.join("out.wasm");
    std::fs::write(&out, "old").unwrap();
    let o = compose(&scratch, &plugin, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&out).unwrap().starts_with(b"\0asm"));
    // The mode any written file gets (0666 less the umask), not the 0600 of a temporary file.
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
    };
    let fresh = scratch.join("fresh");
    std::fs::write(&fresh, "").unwrap();
    assert_eq!(mode(&out), mode(&fresh), "the composed plugin's mode");
    assert_eq!(std::fs::read(&plugin).unwrap(), original);
}

/// Two composed counter plugins on wasmtime-py (which gives them WASI 0.2 and nothing else)
/// and two `lockbydir exec` loops on one lock directory: exact count, no overlapping holds.
#[test]
fn a_composed_plugin_takes_turns_with_exec_on_a_host_without_lockbydir() {
    let python = match languages::python_tools() {
        Ok(python) => python,
        Err(why) => {
            eprintln!("compose: skipped: {why}");
            return;
        }
    };
    let scratch = Scratch::new("compose-host");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let composed = scratch.join("counter-composed.wasm");
    let o = compose(&scratch, &guest("counter.wasm"), &composed);
    assert!(o.status.success(), "compose failed: {}", stderr(&o));

    let rounds = 25;
    let mut children = Vec::new();
    for i in 0..2 {
        children.push((format!("exec-{i}"), exec_loop(&locks, &work, rounds, i)));
    }
    for i in 0..2 {
        let child = Command::new(&python)
            .arg(run_py())
            .arg(&composed)
            .arg("--dir")
            .arg(format!("{}::.", locks.display()))
            .arg("--dir")
            .arg(format!("{}::/work", work.display()))
            .args(["--", "--lock", "shared", "--counter", "/work/counter"])
            .args(["--log", "/work/log", "--rounds", &rounds.to_string()])
            .args(["--label", &format!("wasmtime-py-{i}")])
            .spawn()
            .unwrap();
        children.push((format!("wasmtime-py-{i}"), child));
    }
    for (label, mut child) in children {
        assert!(child.wait().unwrap().success(), "{label} failed");
    }
    assert_eq!(count(&work.join("counter")), 4 * rounds);
    assert_exclusive(&work.join("log"), 4 * rounds);
}

/// examples/compose/run.py.
fn run_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/compose/run.py")
}

/// A shell loop of `rounds` `lockbydir exec` increments under lock `shared`.
fn exec_loop(locks: &Path, work: &Path, rounds: usize, i: usize) -> Child {
    let exe = env!("CARGO_BIN_EXE_lockbydir");
    let script = format!(
        "for i in $(seq {rounds}); do \"{exe}\" --locks \"$0\" exec --quiet shared -- sh -c '{EXEC_INCREMENT}' sh \"$1\" exec-{i} || exit 1; done"
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

/// docs/composing.md shows examples/compose/run.py, the runner this test uses, byte for byte.
#[test]
fn the_docs_show_the_runner_the_test_uses() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/composing.md");
    let blocks = languages::marked_blocks(&std::fs::read_to_string(doc).unwrap());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].0, "compose/run.py");
    assert_eq!(blocks[0].1, std::fs::read_to_string(run_py()).unwrap());
}
