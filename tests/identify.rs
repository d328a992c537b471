//! Identifying and installing the binary: `--version` names the commit it was built from, the
//! wasmtime it runs on and the lock component's hash; `completions` and `man` cover every
//! subcommand, and the man pages render.

mod common;

#[path = "../cli/build/git.rs"]
mod git;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Scratch, output, stderr, stdout};
use sha2::{Digest, Sha256};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `lockbydir ARGS` (no lock directory needed), checked to succeed; its stdout.
fn run(args: &[&str]) -> String {
    let o = output(Command::new(env!("CARGO_BIN_EXE_lockbydir")).args(args));
    assert!(
        o.status.success(),
        "lockbydir {args:?} failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

/// The subcommands as `lockbydir --help` lists them (without `help`).
fn subcommands() -> Vec<String> {
    let help = run(&["--help"]);
    let section = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help has a Commands section");
    let names: Vec<String> = section
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    for expected in ["run", "exec", "status", "completions", "man"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    names
}

fn git_available() -> bool {
    Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = output(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args),
    );
    assert!(o.status.success(), "git {args:?} failed: {}", stderr(&o));
    stdout(&o).trim().to_owned()
}

#[test]
fn version_names_the_commit_of_head() {
    let long = run(&["--version"]);
    let short = run(&["-V"]);
    let head = git::head(&workspace());
    match head {
        Some(head) => {
            let expected = git(&workspace(), &["rev-parse", "HEAD"]);
            assert_eq!(head.hash, expected);
            assert!(long.contains(&format!("commit: {expected}\n")), "{long}");
            assert!(short.contains(&expected[..12]), "{short}");
        }
        None => {
            eprintln!("skipped the hash comparison: the source tree is not a git checkout");
            assert!(long.contains("commit: unknown\n"), "{long}");
        }
    }
}

#[test]
fn version_names_the_component_hash_and_wasmtime() {
    let scratch = Scratch::new("identify-component");
    let file = scratch.join("lock.wasm");
    run(&["component", "--out", file.to_str().unwrap()]);
    let digest: String = Sha256::digest(std::fs::read(&file).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let long = run(&["--version"]);
    assert!(
        long.contains(&format!("lock component: sha256 {digest} ")),
        "{long}"
    );

    // The wasmtime the lockfile pins.
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap();
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.lock has wasmtime");
    assert!(
        long.contains(&format!("\nwasmtime: {wasmtime}\n")),
        "{long}"
    );
}

#[test]
fn commit_only_from_the_top_of_a_work_tree_and_watching_only_existing_files() {
    if !git_available() {
        eprintln!("skipped: git is not installed");
        return;
    }
    let scratch = Scratch::new("identify-git");
    // A directory inside another repository (this one: the scratch lives under target/) is a
    // copy, not a checkout.
    let copy = scratch.dir("copy");
    assert!(git::head(&copy).is_none());

    let repo = scratch.dir("repo");
    git(&repo, &["init", "-q", "-b", "main"]);
    assert!(git::head(&repo).is_none(), "no commit yet");
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let head = git::head(&repo).unwrap();
    assert_eq!(head.hash, git(&repo, &["rev-parse", "HEAD"]));
    let loose = repo.join(".git/refs/heads/main");
    assert!(
        head.watch.contains(&repo.join(".git/HEAD")),
        "{:?}",
        head.watch
    );
    assert!(head.watch.contains(&loose), "{:?}", head.watch);
    assert!(head.watch.iter().all(|f| f.is_file()), "{:?}", head.watch);
    assert!(
        git::head(&repo.join(".git")).is_none(),
        "not a work tree's top"
    );

    // The branch only in packed-refs: a commit then writes a new loose ref, so something
    // already watched must change with it.
    git(&repo, &["pack-refs", "--all"]);
    let packed = git::head(&repo).unwrap();
    assert!(!loose.exists());
    assert!(
        packed.watch.iter().all(|f| f.is_file()),
        "{:?}",
        packed.watch
    );
    let before: Vec<Vec<u8>> = packed
        .watch
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
    let changed = packed
        .watch
        .iter()
        .zip(&before)
        .any(|(f, b)| std::fs::read(f).ok().as_ref() != Some(b));
    assert!(changed, "a commit changed none of {:?}", packed.watch);
    assert_eq!(
        git::head(&repo).unwrap().hash,
        git(&repo, &["rev-parse", "HEAD"])
    );

    // Detached: HEAD holds the hash itself.
    git(&repo, &["checkout", "-q", "--detach", "HEAD~1"]);
    let detached = git::head(&repo).unwrap();
    assert_eq!(detached.hash, git(&repo, &["rev-parse", "HEAD"]));
    assert!(detached.watch.contains(&repo.join(".git/HEAD")));

    // A linked worktree: its HEAD in its own git dir, the branch in the common one.
    let linked = scratch.join("linked");
    git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            linked.to_str().unwrap(),
            "main",
        ],
    );
    let side = git::head(&linked).unwrap();
    assert_eq!(side.hash, git(&linked, &["rev-parse", "HEAD"]));
    assert!(
        side.watch.contains(&repo.join(".git/refs/heads/side")),
        "{:?}",
        side.watch
    );
    assert!(
        side.watch
            .contains(&repo.join(".git/worktrees/linked/HEAD")),
        "{:?}",
        side.watch
    );
}

#[test]
fn bash_completion_offers_every_subcommand_and_their_options() {
    let script = run(&["completions", "bash"]);
    if Command::new("bash").arg("-c").arg("true").output().is_err() {
        eprintln!("skipped running the bash completion: bash is not installed");
        return;
    }
    let scratch = Scratch::new("identify-bash");
    let file = scratch.join("lockbydir.bash");
    std::fs::write(&file, &script).unwrap();
    // What bash's completion machinery does on TAB: COMP_WORDS/COMP_CWORD, then the function.
    let complete = |words: &str| {
        let o = output(Command::new("bash").arg("-c").arg(format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _lockbydir lockbydir \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        )));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let offered = complete("lockbydir ''");
    for sub in subcommands() {
        assert!(offered.contains(&sub), "{sub} not offered: {offered:?}");
    }
    let exec = complete("lockbydir exec --");
    for flag in ["--lease", "--holder", "--wait", "--locks"] {
        assert!(
            exec.contains(&flag.to_owned()),
            "{flag} not offered: {exec:?}"
        );
    }
    for shell in ["zsh", "fish"] {
        let script = run(&["completions", shell]);
        for sub in subcommands() {
            assert!(script.contains(&sub), "{shell} completions lack {sub}");
        }
    }
}

#[test]
fn man_pages_render_and_list_every_subcommand() {
    let scratch = Scratch::new("identify-man");
    let dir = scratch.dir("man1");
    run(&["man", "--out", dir.to_str().unwrap()]);
    let subs = subcommands();
    let main = dir.join("lockbydir.1");
    assert_eq!(run(&["man"]), std::fs::read_to_string(&main).unwrap());
    let mut pages = vec![main.clone()];
    pages.extend(subs.iter().map(|s| dir.join(format!("lockbydir-{s}.1"))));
    for page in &pages {
        assert!(page.is_file(), "{} missing", page.display());
    }
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped rendering: `man` is not installed");
        return;
    }
    let render = |page: &Path| {
        let o = output(
            Command::new("man")
                .arg("-l")
                .arg(page)
                .env("LC_ALL", "C")
                .env("MANWIDTH", "200")
                .env("MANPAGER", "cat")
                .env("PAGER", "cat")
                .env_remove("MAN_KEEP_FORMATTING"),
        );
        assert!(
            o.status.success(),
            "man -l {} failed: {}",
            page.display(),
            stderr(&o)
        );
        assert_eq!(stderr(&o), "", "man -l {} warned", page.display());
        stdout(&o)
    };
    let text = render(&main);
    let version = run(&["-V"]);
    let version = version.trim().strip_prefix("lockbydir ").unwrap();
    let version_section = text.split("\nVERSION\n").nth(1).expect("a VERSION section");
    assert!(version_section.contains(version), "{version} not in {text}");
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS", "VERSION"] {
        assert!(text.lines().any(|l| l == section), "no {section} in {text}");
    }
    for sub in &subs {
        assert!(
            text.contains(&format!("lockbydir-{sub}(1)")),
            "{sub} not in {text}"
        );
    }
    for page in &pages[1..] {
        let text = render(page);
        assert!(text.contains("SYNOPSIS"), "{}: {text}", page.display());
    }
    let exec = render(&dir.join("lockbydir-exec.1"));
    assert!(exec.contains("--lease"), "{exec}");
}
