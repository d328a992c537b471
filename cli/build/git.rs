//! The git commit a build is made from, for `lockbydir --version`.
//!
//! Included by `cli/build.rs` and by `tests/identify.rs` (which checks it on repositories of
//! its own making). Only a directory that is itself the top of a git work tree has a commit:
//! a source tarball or a copy unpacked inside some other repository must not report that
//! repository's commit, and must still build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The commit of a work tree and the files to watch so the build reruns when it changes.
#[derive(Debug)]
pub struct Head {
    /// The full hash of HEAD (40 hex digits, or 64 in a SHA-256 repository).
    pub hash: String,
    /// Existing files whose change means HEAD may point elsewhere: the work tree's `HEAD`,
    /// the branch's loose ref, `packed-refs`, the HEAD reflog. Only existing files, because
    /// cargo reruns a build script on every build while a file it watches is missing.
    pub watch: Vec<PathBuf>,
}

/// HEAD of the git work tree whose top is `dir`; `None` if `dir` is not the top of one, the
/// repository has no commit yet, or `git` cannot be run.
pub fn head(dir: &Path) -> Option<Head> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    let hash = git(dir, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?;
    if !(hash.len() == 40 || hash.len() == 64) || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // `--git-path` resolves each name where git keeps it: HEAD and the reflog in this work
    // tree's own git dir, refs and packed-refs in the common one (linked worktrees).
    let git_path = |name: &str| git(dir, &["rev-parse", "--git-path", name]).map(|p| dir.join(p));
    let mut names = vec!["HEAD".to_owned(), "logs/HEAD".into(), "packed-refs".into()];
    // The branch HEAD names, unless detached (then HEAD itself holds the hash).
    names.extend(git(dir, &["symbolic-ref", "--quiet", "HEAD"]));
    // A reftable repository keeps every ref in tables listed here.
    names.push("reftable/tables.list".into());
    let watch = names
        .iter()
        .filter_map(|name| git_path(name))
        .filter(|path| path.is_file())
        .collect();
    Some(Head { hash, watch })
}

/// Run git in `dir`; its first line of output, if it succeeded and printed one.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let line = String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .next()?
        .trim()
        .to_owned();
    (!line.is_empty()).then_some(line)
}
