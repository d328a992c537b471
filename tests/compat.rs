//! Every published version of the lock interface stays served: a plugin built against each
//! published WIT (`wit-published/`) loads on today's host and takes turns with the others on
//! one lock; and no published WIT file ever changes (`wit-published/SHA256SUMS`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;

use common::{Scratch, assert_exclusive, count, guest, lockbydir, stderr};
use sha2::{Digest, Sha256};

/// The plugins built against each published version, and the version each imports.
const PLUGINS: &[(&str, &str)] = &[
    ("counter-v0-1-0.wasm", "lockbydir:lock/lock@0.1.0"),
    ("counter.wasm", "lockbydir:lock/lock@0.2.0"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The lock interface versions a component imports, read from the component itself.
fn imported_lock_versions(file: &Path) -> Vec<String> {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, file).unwrap();
    component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.starts_with("lockbydir:lock/lock@"))
        .collect()
}

#[test]
fn the_compat_plugins_import_each_published_version() {
    for (plugin, version) in PLUGINS {
        assert_eq!(
            imported_lock_versions(&guest(plugin)),
            [version.to_string()],
            "{plugin}"
        );
    }
}

#[test]
fn plugins_built_against_each_published_version_take_turns_on_one_lock() {
    let scratch = Scratch::new("compat");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let rounds = 20;
    let runs: Vec<Child> = PLUGINS
        .iter()
        .flat_map(|(plugin, _)| [(plugin, 0), (plugin, 1)])
        .map(|(plugin, i)| {
            lockbydir(&locks)
                .args(["run", "--quiet", "--dir"])
                .arg(format!("{}::/work", work.display()))
                .arg(guest(plugin))
                .args(["--", "--lock", "shared", "--counter", "/work/counter"])
                .args(["--log", "/work/log", "--rounds", &rounds.to_string()])
                .args(["--label", &format!("{plugin}-{i}")])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let o = run.wait_with_output().unwrap();
        assert!(o.status.success(), "a plugin failed: {}", stderr(&o));
    }
    let total = PLUGINS.len() * 2 * rounds;
    assert_eq!(count(&work.join("counter")), total);
    assert_exclusive(&work.join("log"), total);
    // Both versions held the lock.
    let log = std::fs::read_to_string(work.join("log")).unwrap();
    for (plugin, _) in PLUGINS {
        assert!(
            log.contains(&format!("{plugin}-0")),
            "{plugin} never held it"
        );
    }
}

#[test]
fn no_published_wit_file_has_changed_and_wit_is_the_newest_version() {
    let published = workspace().join("wit-published");
    let sums = std::fs::read_to_string(published.join("SHA256SUMS")).unwrap();
    let mut versions = Vec::new();
    for line in sums.lines() {
        let (sum, file) = line.split_once("  ").expect("`SUM  FILE` lines");
        let text = std::fs::read(published.join(file)).unwrap();
        let actual: String = Sha256::digest(&text)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            actual, sum,
            "wit-published/{file} changed after it was published: a published WIT never \
             changes; make a new version instead"
        );
        // The lock package's versions are the directories named by a bare version; other
        // packages (`waiting-0.1.0`) are `NAME-VERSION`.
        let dir = file.split_once('/').unwrap().0;
        if dir.starts_with(|c: char| c.is_ascii_digit()) {
            versions.push(dir.to_owned());
        }
    }
    // Every file of every version is listed.
    for entry in std::fs::read_dir(&published).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir).unwrap() {
                let file = file.unwrap();
                let name = format!(
                    "{}/{}",
                    dir.file_name().unwrap().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                if file.file_name() == "deps" {
                    // The packages a published package uses: links to their published
                    // versions, each checked on its own.
                    for dep in std::fs::read_dir(file.path()).unwrap() {
                        let dep = dep.unwrap().path();
                        let target = std::fs::read_link(&dep)
                            .unwrap_or_else(|e| panic!("{}: not a link: {e}", dep.display()));
                        assert!(
                            target.starts_with("../../"),
                            "{} links outside wit-published: {}",
                            dep.display(),
                            target.display()
                        );
                    }
                    continue;
                }
                assert!(sums.contains(&name), "{name} is not in SHA256SUMS");
            }
        }
    }
    // `wit/` (what plugin authors copy, and what the host and the lock component are built
    // from) is exactly the newest published version.
    let newest = versions.last().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(workspace().join("wit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let copy = published.join(newest).join(&name);
        assert_eq!(
            std::fs::read(file).unwrap(),
            std::fs::read(&copy).unwrap_or_default(),
            "wit/{name} differs from wit-published/{newest}/{name}"
        );
    }
    let count = std::fs::read_dir(published.join(newest)).unwrap().count();
    assert_eq!(
        files.len(),
        count,
        "wit/ and wit-published/{newest} hold other files"
    );
}
