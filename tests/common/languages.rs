//! The Python and JavaScript plugins of examples/plugins, built as their docs say
//! (docs/plugins-in-python-and-js.md), with tools the tests install themselves: componentize-py
//! (and wasmtime-py, a host without lockbydir) into a virtualenv, componentize-js and jco into
//! a local npm prefix, both at the versions examples/plugins pins, in the tools cache
//! (`$LOCKBYDIR_CACHE_DIR/plugin-tools`, else the tests' cache directory). Each step is
//! skipped when a stamp shows its inputs unchanged, so a second run is quick. When a tool
//! cannot be had (no python3 with venv, no node/npm, no network), the builders return why, for
//! the test to print `skipped: <why>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{lockbydir, output, stderr};

/// Why a tool or plugin cannot be had on this machine.
pub type Skip = String;

/// The wasmtime-py version the composed-plugin test runs plugins with (a host that knows
/// nothing of lockbydir).
pub const WASMTIME_PY: &str = "wasmtime==51.0.0";

/// A line on the real stderr, past libtest's capture, so CI logs show the setup steps.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "languages: {line}");
}

/// Where the tools and the built plugins are kept between runs.
pub fn tools_dir() -> PathBuf {
    let base = std::env::var_os("LOCKBYDIR_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(super::cache_dir);
    base.join("plugin-tools")
}

/// examples/plugins.
pub fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins")
        .canonicalize()
        .expect("examples/plugins next to cli/")
}

/// Whether a command starts and exits 0 (its output discarded).
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run an install step; its failure (most often: no network) is a reason to skip.
fn install(cmd: &mut Command) -> Result<(), Skip> {
    say(&format!("install: {cmd:?}"));
    let o = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if o.status.success() {
        return Ok(());
    }
    let text = stderr(&o);
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    Err(format!(
        "{cmd:?} failed ({}), no network?: {}",
        o.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

/// Run a build step of our own plugins: its failure fails the test.
fn build(cmd: &mut Command) {
    say(&format!("build: {cmd:?}"));
    let o = output(cmd);
    assert!(
        o.status.success(),
        "build step {cmd:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// Copy `from` (a file or a directory tree) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }
}

/// Every file below `dir` (sorted) with its bytes: what a stamp compares.
fn contents(dir: &Path) -> Vec<u8> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .is_some_and(|n| n == "node_modules" || n == ".inputs")
            {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend_from_slice(f.strip_prefix(dir).unwrap().to_string_lossy().as_bytes());
        out.push(0);
        out.extend(std::fs::read(&f).unwrap());
        out.push(0);
    }
    out
}

/// A virtualenv in the tools directory with componentize-py (examples/plugins/python's
/// requirements.txt) and wasmtime-py; its python.
pub fn python_tools() -> Result<PathBuf, Skip> {
    static ONCE: OnceLock<Result<PathBuf, Skip>> = OnceLock::new();
    ONCE.get_or_init(|| {
        if !succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"])) {
            return Err(
                "python3 with venv/ensurepip is not installed (on Debian: python3-venv)".to_owned(),
            );
        }
        let venv = tools_dir().join("python");
        let python = venv.join("bin/python");
        let wanted = format!(
            "{}{WASMTIME_PY}\n",
            std::fs::read_to_string(plugins_dir().join("python/requirements.txt")).unwrap()
        );
        let stamp = venv.join(".lockbydir-requirements");
        let usable = std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted[..])
            && succeeds(Command::new(&python).args(["-c", "import wasmtime, componentize_py"]));
        if !usable {
            std::fs::create_dir_all(tools_dir()).unwrap();
            install(
                Command::new("python3")
                    .args(["-m", "venv", "--clear"])
                    .arg(&venv),
            )?;
            install(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--quiet",
                    ])
                    .arg("-r")
                    .arg(plugins_dir().join("python/requirements.txt"))
                    .arg(WASMTIME_PY),
            )?;
            std::fs::write(&stamp, wanted).unwrap();
        }
        Ok(python)
    })
    .clone()
}

/// componentize-js and jco installed by `npm ci` from examples/plugins/js's package.json and
/// package-lock.json into a directory of the tools cache; that directory.
pub fn js_tools() -> Result<PathBuf, Skip> {
    static ONCE: OnceLock<Result<PathBuf, Skip>> = OnceLock::new();
    ONCE.get_or_init(|| {
        for tool in ["node", "npm"] {
            if !succeeds(Command::new(tool).arg("--version")) {
                return Err(format!("`{tool}` is not installed"));
            }
        }
        let dir = tools_dir().join("js");
        let source = plugins_dir().join("js");
        let wanted: Vec<u8> = ["package.json", "package-lock.json"]
            .iter()
            .flat_map(|f| std::fs::read(source.join(f)).unwrap())
            .collect();
        let stamp = dir.join("node_modules/.lockbydir-stamp");
        if std::fs::read(&stamp).ok().as_deref() != Some(&wanted[..]) {
            std::fs::create_dir_all(&dir).unwrap();
            for f in ["package.json", "package-lock.json"] {
                std::fs::copy(source.join(f), dir.join(f)).unwrap();
            }
            install(
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--quiet"])
                    .current_dir(&dir),
            )?;
            std::fs::write(&stamp, wanted).unwrap();
        }
        Ok(dir)
    })
    .clone()
}

/// Build a plugin in `build_dir` from `source` (copied there with the lock WIT written into
/// `wit/deps/lockbydir-lock` by `lockbydir component --wit-dir`), unless the inputs are those
/// of the last build; `run_build` makes `counter.wasm` there. Returns its path.
fn build_plugin(
    source: &Path,
    build_dir: &Path,
    extra: impl Fn(&Path),
    run_build: impl Fn(&Path),
) -> PathBuf {
    let fresh = build_dir.with_extension("next");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).unwrap();
    for f in std::fs::read_dir(source).unwrap() {
        let f = f.unwrap();
        let name = f.file_name();
        if !["node_modules", "counter.wasm"].contains(&name.to_str().unwrap_or("")) {
            copy_tree(&f.path(), &fresh.join(&name));
        }
    }
    let locks = fresh.join(".unused-locks");
    build(
        lockbydir(&locks)
            .args(["component", "--wit-dir"])
            .arg(fresh.join("wit/deps/lockbydir-lock")),
    );
    extra(&fresh);
    let wasm = build_dir.join("counter.wasm");
    if wasm.exists() && std::fs::read(build_dir.join(".inputs")).ok() == Some(contents(&fresh)) {
        let _ = std::fs::remove_dir_all(&fresh);
        return wasm;
    }
    let inputs = contents(&fresh);
    run_build(&fresh);
    std::fs::write(fresh.join(".inputs"), inputs).unwrap();
    let _ = std::fs::remove_dir_all(build_dir);
    std::fs::rename(&fresh, build_dir).unwrap();
    wasm
}

/// examples/plugins/python built with componentize-py, as the docs say; the component.
pub fn python_plugin() -> Result<PathBuf, Skip> {
    static ONCE: OnceLock<Result<PathBuf, Skip>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let python = python_tools()?;
        let componentize = python.with_file_name("componentize-py");
        Ok(build_plugin(
            &plugins_dir().join("python"),
            &tools_dir().join("python-plugin"),
            |_| {},
            |dir| {
                build(
                    Command::new(&componentize)
                        .args(["-d", "wit", "-w", "counter", "componentize", "app"])
                        .args(["-o", "counter.wasm"])
                        .current_dir(dir),
                )
            },
        ))
    })
    .clone()
}

/// examples/plugins/js built with componentize-js (`npm run wit`, `npm run build`), as the
/// docs say; the component.
pub fn js_plugin() -> Result<PathBuf, Skip> {
    static ONCE: OnceLock<Result<PathBuf, Skip>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let tools = js_tools()?;
        let link = |dir: &Path| {
            let _ = std::fs::remove_file(dir.join("node_modules"));
            std::os::unix::fs::symlink(tools.join("node_modules"), dir.join("node_modules"))
                .unwrap();
        };
        Ok(build_plugin(
            &plugins_dir().join("js"),
            &tools_dir().join("js-plugin"),
            |dir| {
                link(dir);
                build(
                    Command::new("npm")
                        .args(["run", "--silent", "wit"])
                        .current_dir(dir),
                );
            },
            |dir| {
                build(
                    Command::new("npm")
                        .args(["run", "--silent", "build"])
                        .current_dir(dir),
                )
            },
        ))
    })
    .clone()
}

/// The code blocks whose opening fence says `file=PATH`: (PATH, the block's text).
pub fn marked_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match &mut current {
            Some((_, text)) if line != "```" => {
                text.push_str(line);
                text.push('\n');
            }
            Some(_) => out.push(current.take().unwrap()),
            None => {
                if let Some(file) = line.strip_prefix("```").and_then(|info| {
                    info.split_whitespace()
                        .find_map(|w| w.strip_prefix("file="))
                }) {
                    current = Some((file.to_owned(), String::new()));
                }
            }
        }
    }
    out
}
