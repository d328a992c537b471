//! The Rust plugin SDK (`plugin/`, crate `lockbydir-plugin`): its copy of the WIT is the
//! workspace's, its documentation examples compile, and the plugin of
//! `docs/writing-plugins.md` builds exactly as written and counts exactly under `lockbydir run`.
//! And the WIT that `lockbydir component` hands out is a package other projects build
//! against, in both layouts `wit-bindgen` reads under `wit/deps/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Scratch, count, lockbydir, output, stderr, stdout};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The workspace's cargo, offline when the outer build is.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    if std::env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    cmd
}

#[test]
fn the_sdk_wit_is_a_byte_for_byte_copy_of_the_workspace_wit() {
    let copy = workspace().join("plugin/wit");
    let mut names: Vec<String> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The plugin world and everything it uses; another file of wit/ may be left out.
    for needed in ["lock.wit", "types.wit", "worlds.wit"] {
        assert!(
            names.iter().any(|n| n == needed),
            "plugin/wit lacks {needed}"
        );
    }
    for name in &names {
        let original = std::fs::read(workspace().join("wit").join(name))
            .unwrap_or_else(|e| panic!("plugin/wit/{name} has no original in wit/: {e}"));
        let copied = std::fs::read(copy.join(name)).unwrap();
        assert!(
            original == copied,
            "plugin/wit/{name} differs from wit/{name}: copy wit/{name} into plugin/wit/"
        );
    }
}

#[test]
fn every_documentation_example_of_the_sdk_compiles() {
    // `no_run`: the examples call the host. Natively the generated imports compile (they are
    // never called), so the doc tests compile them all.
    let o = output(
        cargo()
            .current_dir(workspace())
            .args(["test", "--release", "--doc", "-p", "lockbydir-plugin"])
            .stderr(Stdio::piped()),
    );
    assert!(
        o.status.success(),
        "doc tests of lockbydir-plugin failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).contains(" passed; 0 failed"), "{}", stdout(&o));
}

/// The contents of the fenced blocks of `language` in `markdown`, in order.
fn fenced_blocks(markdown: &str, language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_end() == format!("```{language}") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// The scratch crate of the guide: `cargo new visits`, the guide's dependency line pointing
/// at this checkout's `plugin/`, its first Rust block as `src/main.rs` and every other one
/// as a binary of its own. Returns the built `visits.wasm`.
fn build_the_guide_plugin(dir: &Path) -> PathBuf {
    let guide = std::fs::read_to_string(workspace().join("docs/writing-plugins.md")).unwrap();
    let rust = fenced_blocks(&guide, "rust");
    let toml = fenced_blocks(&guide, "toml");
    assert!(rust.len() >= 2, "the guide has {} Rust blocks", rust.len());
    let placeholder = "\"../lockbydir/plugin\"";
    let dependency = toml
        .iter()
        .find(|b| b.contains("lockbydir-plugin") && b.contains(placeholder))
        .expect("the guide gives the dependency line, with path ../lockbydir/plugin");
    let real_path = format!("{:?}", workspace().join("plugin").display().to_string());
    let manifest = format!(
        "[package]\nname = \"visits\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n{}\n\
         # Not part of the lockbydir workspace it lies in.\n[workspace]\n",
        dependency.replace(placeholder, &real_path)
    );
    std::fs::create_dir_all(dir.join("src/bin")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    // The workspace's versions of the dependencies, as a checkout of it would resolve them.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    std::fs::write(dir.join("src/main.rs"), &rust[0]).unwrap();
    for (i, block) in rust.iter().enumerate().skip(1) {
        std::fs::write(dir.join(format!("src/bin/example_{i}.rs")), block).unwrap();
    }
    build_for_wasm(dir, "visits")
}

/// `cargo build` the crate in `dir` for wasm32-wasip2; returns its binary `name`.
fn build_for_wasm(dir: &Path, name: &str) -> PathBuf {
    // A target dir that outlives the scratch crates, so later runs build incrementally.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("writing-plugins-target");
    let o = output(
        cargo()
            .current_dir(dir)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    );
    assert!(
        o.status.success(),
        "{} does not build:\n{}",
        dir.display(),
        stderr(&o)
    );
    target.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

/// `(visit, fence)` from each `visit N (fence F)` line.
fn visits(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .map(|line| {
            let parse = || -> Option<(u64, u64)> {
                let rest = line.strip_prefix("visit ")?;
                let (n, fence) = rest.split_once(" (fence ")?;
                Some((n.parse().ok()?, fence.strip_suffix(')')?.parse().ok()?))
            };
            parse().unwrap_or_else(|| panic!("not a visit line: {line:?}"))
        })
        .collect()
}

#[test]
fn the_plugin_of_the_guide_builds_as_written_and_its_copies_never_lose_a_visit() {
    let scratch = Scratch::new("writing-plugins");
    let plugin = build_the_guide_plugin(&scratch.dir("visits"));
    let locks = scratch.dir("locks");
    let data = scratch.dir("data");
    let run = |instances: &str| {
        let mut cmd = lockbydir(&locks);
        cmd.args(["run", "--quiet", "--instances", instances, "--dir"])
            .arg(&data)
            .arg(&plugin)
            .arg("--")
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let first = output(&mut run("1"));
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(visits(&stdout(&first)), [(1, 1)], "{}", stderr(&first));

    // Two processes of eight instances each, all at once, on the one lock.
    let children: Vec<_> = (0..2).map(|_| run("8").spawn().unwrap()).collect();
    let mut seen = Vec::new();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        seen.extend(visits(&stdout(&o)));
    }
    assert_eq!(count(&data.join("count.txt")), 17);
    seen.sort();
    let numbers: Vec<u64> = seen.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (2..=17).collect::<Vec<_>>(),
        "each visit counted once"
    );
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1) && seen[0].1 > 1,
        "fences rise with the visits: {seen:?}"
    );
}

/// A plugin of its own package (`example:consumer`) that imports the lock interface from
/// `wit/deps/`, filled by `fill_deps`, with `wit-bindgen` as any project would use it.
fn build_a_consumer(dir: &Path, fill_deps: impl FnOnce(&Path)) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("wit/deps")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [dependencies]\nwit-bindgen = \"0.63\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    std::fs::write(
        dir.join("wit/world.wit"),
        "package example:consumer;\n\nworld app {\n    import lockbydir:lock/lock@0.2.0;\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        r#"wit_bindgen::generate!({ path: "wit", world: "app", generate_all });

use lockbydir::lock::lock::Lock;
use lockbydir::lock::types::{AcquireOutcome, Options};

fn main() {
    let defaults = Options { lease_ms: None, wait_ms: None, holder: None, fairness: None, tuning: None };
    let lock = Lock::open("consumed", &defaults).unwrap();
    match lock.acquire().unwrap() {
        AcquireOutcome::Acquired(grant) => println!("fence {}", grant.fence),
        AcquireOutcome::Busy(_) => panic!("busy without a wait limit"),
    }
}
"#,
    )
    .unwrap();
    fill_deps(&dir.join("wit/deps"));
    build_for_wasm(dir, "consumer")
}

#[test]
fn the_wit_lockbydir_hands_out_is_a_package_other_projects_build_against() {
    let scratch = Scratch::new("wit-consumer");
    let locks = scratch.dir("locks");
    // `component --wit-dir`: the package as a directory of its own under wit/deps/.
    let from_dir = build_a_consumer(&scratch.dir("as-dir"), |deps| {
        let o = output(
            lockbydir(&locks)
                .args(["component", "--wit-dir"])
                .arg(deps.join("lockbydir-lock")),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    });
    let out = output(lockbydir(&locks).args(["run", "--quiet"]).arg(&from_dir));
    assert_eq!(stdout(&out), "fence 1\n", "{}", stderr(&out));
    // `component --wit`: the package as one file under wit/deps/.
    let from_file = build_a_consumer(&scratch.dir("as-file"), |deps| {
        let o = output(lockbydir(&locks).args(["component", "--wit"]));
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::write(deps.join("lockbydir-lock.wit"), &o.stdout).unwrap();
    });
    let out = output(lockbydir(&locks).args(["run", "--quiet"]).arg(&from_file));
    assert_eq!(stdout(&out), "fence 2\n", "{}", stderr(&out));
}
