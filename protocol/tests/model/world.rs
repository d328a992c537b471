//! An in-memory directory tree with the POSIX semantics the protocol relies on, and
//! modification times on the filesystem's own clock.
//!
//! That clock is coarse and lags, as a kernel's is: a change at virtual time `t` is stamped
//! `floor((t - lag) / granularity) * granularity` (see [`World::stamp`]), so an mtime can be
//! up to `lag + granularity - 1` ms earlier than the change, never later.
//!
//! The protocol only ever makes directories, so the tree is a set of directory paths, each
//! with its mtime. Every operation is one atomic step: the scheduler runs exactly one of them
//! at a time.

use std::collections::BTreeMap;

use lockbydir_protocol::{FsError, FsErrorKind};

/// The lock directory's contents: every directory below the root, by normalized path
/// (`a/b`, no leading `./`), with its modification time. The root itself is the empty path
/// and always exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    dirs: BTreeMap<String, i64>,
    root_mtime: i64,
    /// The time (ms since the epoch): the engine sets it before each step, and what a step
    /// changes gets [`World::stamp`] of it as its mtime.
    pub clock: i64,
    /// How far the filesystem's clock lags `clock` (ms).
    pub lag_ms: i64,
    /// The step of the filesystem's clock (ms); 0 counts as 1.
    pub granularity_ms: i64,
}

fn not_found(path: &str) -> FsError {
    FsError::new(
        FsErrorKind::NotFound,
        format!("{path}: no such file or directory"),
    )
}

fn other(path: &str, why: &str) -> FsError {
    FsError::new(FsErrorKind::Other, format!("{path}: {why}"))
}

/// `.` and `./x` as the protocol writes them, to `` and `x`; refuses `..`, empty and `.`
/// components, which the protocol never produces.
fn normalize(path: &str) -> Result<String, FsError> {
    let path = path.strip_prefix("./").unwrap_or(path);
    if path == "." || path.is_empty() {
        return Ok(String::new());
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(other(path, "invalid path"));
    }
    Ok(path.to_owned())
}

fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

impl World {
    /// An empty lock directory with an exact filesystem clock.
    pub fn new() -> Self {
        World::default()
    }

    /// An empty lock directory whose filesystem clock lags by `lag_ms` and advances in steps
    /// of `granularity_ms`.
    pub fn with_clock(lag_ms: u64, granularity_ms: u64) -> Self {
        World {
            lag_ms: lag_ms as i64,
            granularity_ms: granularity_ms as i64,
            ..World::default()
        }
    }

    /// The filesystem's clock now: the mtime a change made now gets.
    pub fn stamp(&self) -> i64 {
        let step = self.granularity_ms.max(1);
        (self.clock - self.lag_ms).div_euclid(step) * step
    }

    fn exists(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains_key(path)
    }

    /// Mark `path` (an existing directory) as modified now.
    fn touch(&mut self, path: &str) {
        let now = self.stamp();
        match self.dirs.get_mut(path) {
            Some(mtime) => *mtime = now,
            None => self.root_mtime = now,
        }
    }

    /// Everything strictly below `path` (all depths), in order.
    fn below<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        self.dirs
            .range(prefix.clone()..)
            .map(|(p, _)| p)
            .take_while(move |p| p.starts_with(&prefix))
    }

    /// The names directly inside `path` (sorted); `None` if `path` does not exist.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        let path = normalize(path).ok()?;
        if !self.exists(&path) {
            return None;
        }
        let skip = if path.is_empty() { 0 } else { path.len() + 1 };
        Some(
            self.below(&path)
                .map(|p| &p[skip..])
                .filter(|rest| !rest.contains('/'))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether `path` is an existing directory.
    pub fn is_dir(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|p| self.exists(&p))
    }

    /// `stat`: when `path` was last modified (its entries created, removed or renamed), on
    /// the filesystem's clock.
    pub fn modified(&self, path: &str) -> Result<i64, FsError> {
        let path = normalize(path)?;
        match self.dirs.get(&path) {
            Some(mtime) => Ok(*mtime),
            None if path.is_empty() => Ok(self.root_mtime),
            None => Err(not_found(&path)),
        }
    }

    /// What `create_dir(path)` would do, without doing it.
    pub fn check_create(&self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        if self.exists(&path) {
            return Err(FsError::new(
                FsErrorKind::AlreadyExists,
                format!("{path}: file exists"),
            ));
        }
        if !self.exists(parent(&path)) {
            return Err(not_found(&path));
        }
        Ok(())
    }

    /// `mkdir`: the parent must exist and the path must not.
    pub fn create_dir(&mut self, path: &str) -> Result<(), FsError> {
        self.check_create(path)?;
        let path = normalize(path)?;
        self.touch(parent(&path));
        let now = self.stamp();
        self.dirs.insert(path, now);
        Ok(())
    }

    /// `rmdir`: only an existing, empty directory.
    pub fn remove_dir(&mut self, path: &str) -> Result<(), FsError> {
        let path = normalize(path)?;
        if path.is_empty() {
            return Err(other(".", "cannot remove the root"));
        }
        if !self.exists(&path) {
            return Err(not_found(&path));
        }
        if self.below(&path).next().is_some() {
            return Err(other(&path, "directory not empty"));
        }
        self.dirs.remove(&path);
        self.touch(parent(&path));
        Ok(())
    }

    /// What `rename(from, to)` would do, without doing it: `Ok` if it would succeed.
    pub fn check_rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let (from, to) = (normalize(from)?, normalize(to)?);
        if from.is_empty() || to.is_empty() {
            return Err(other(".", "cannot rename the root"));
        }
        if !self.exists(&from) {
            return Err(not_found(&from));
        }
        if from == to {
            return Ok(());
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(other(&to, "invalid argument (a directory into itself)"));
        }
        if !self.exists(parent(&to)) {
            return Err(not_found(&to));
        }
        if self.exists(&to) && self.below(&to).next().is_some() {
            return Err(other(&to, "directory not empty"));
        }
        Ok(())
    }

    /// `rename`: atomically moves `from` (and everything below it) to `to`. Replaces `to` if
    /// it is an empty directory, fails if it is a non-empty one, `NotFound` if `from` is
    /// missing; renaming an existing path to itself succeeds and changes nothing. Both
    /// parents are modified; the moved directory keeps its mtime.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        self.check_rename(from, to)?;
        let (from, to) = (normalize(from)?, normalize(to)?);
        if from == to {
            return Ok(());
        }
        self.dirs.remove(&to);
        let moved: Vec<(String, i64)> = std::iter::once(from.clone())
            .chain(self.below(&from).cloned())
            .map(|p| {
                let mtime = self.dirs[&p];
                (p, mtime)
            })
            .collect();
        for (old, mtime) in moved {
            self.dirs.remove(&old);
            self.dirs
                .insert(format!("{to}{}", &old[from.len()..]), mtime);
        }
        self.touch(parent(&from));
        self.touch(parent(&to));
        Ok(())
    }

    /// `readdir`: the names inside `path`, `NotFound` if it does not exist.
    pub fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.children(path).ok_or_else(|| not_found(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind<T>(r: Result<T, FsError>) -> Option<FsErrorKind> {
        r.err().map(|e| e.kind)
    }

    #[test]
    fn create_and_remove_follow_posix() {
        let mut w = World::new();
        assert_eq!(kind(w.create_dir("a/b")), Some(FsErrorKind::NotFound));
        w.create_dir("a").unwrap();
        assert_eq!(kind(w.create_dir("a")), Some(FsErrorKind::AlreadyExists));
        w.create_dir("a/b").unwrap();
        assert_eq!(kind(w.remove_dir("a")), Some(FsErrorKind::Other));
        assert_eq!(kind(w.remove_dir("a/c")), Some(FsErrorKind::NotFound));
        w.remove_dir("a/b").unwrap();
        w.remove_dir("a").unwrap();
        assert_eq!(w.read_dir(".").unwrap(), Vec::<String>::new());
        assert_eq!(kind(w.read_dir("a")), Some(FsErrorKind::NotFound));
    }

    #[test]
    fn rename_replaces_only_an_empty_target() {
        let mut w = World::new();
        for d in ["s", "s/free.0", "l", "x", "x/y"] {
            w.create_dir(d).unwrap();
        }
        // A non-empty target refuses, the source stays.
        assert_eq!(kind(w.rename("s", "x")), Some(FsErrorKind::Other));
        // An empty target is replaced, with everything below the source moved along.
        w.rename("s", "l").unwrap();
        assert_eq!(w.read_dir("l").unwrap(), ["free.0"]);
        assert!(!w.is_dir("s") && !w.is_dir("s/free.0"));
        // A missing source is NotFound, also when the target exists.
        assert_eq!(kind(w.rename("s", "l")), Some(FsErrorKind::NotFound));
        // A rename onto itself is a successful no-op, but only if it exists.
        w.rename("l/free.0", "l/free.0").unwrap();
        assert_eq!(
            kind(w.rename("l/nope", "l/nope")),
            Some(FsErrorKind::NotFound)
        );
        // No directory moves into itself; no target in a missing parent.
        assert_eq!(kind(w.rename("x", "x/y/z")), Some(FsErrorKind::Other));
        assert_eq!(kind(w.rename("x", "q/x")), Some(FsErrorKind::NotFound));
        assert_eq!(w.read_dir(".").unwrap(), ["l", "x"]);
    }

    #[test]
    fn mtimes_follow_changes_of_entries() {
        let mut w = World::new();
        w.clock = 10;
        w.create_dir("s").unwrap();
        w.create_dir("s/free.0").unwrap();
        w.clock = 20;
        w.rename("s", "l").unwrap();
        // The moved directory keeps its mtime; its old and new parent (the root) changed.
        assert_eq!(
            (w.modified("l").unwrap(), w.modified(".").unwrap()),
            (10, 20)
        );
        w.clock = 30;
        w.rename("l/free.0", "l/held.1").unwrap();
        assert_eq!(w.modified("l").unwrap(), 30);
        assert_eq!(w.modified("l/held.1").unwrap(), 10);
        w.clock = 40;
        w.rename("l/held.1", "l/held.1").unwrap();
        assert_eq!(
            w.modified("l").unwrap(),
            30,
            "a rename onto itself changes nothing"
        );
        w.remove_dir("l/held.1").unwrap();
        assert_eq!(w.modified("l").unwrap(), 40);
        assert_eq!(kind(w.modified("l/held.1")), Some(FsErrorKind::NotFound));
    }

    #[test]
    fn a_coarse_lagging_clock_stamps_changes_early() {
        let mut w = World::with_clock(5, 4);
        w.clock = 1_000;
        w.create_dir("a").unwrap();
        // 1000 - 5 = 995, down to a multiple of 4: 992, 8 ms before the change.
        assert_eq!(w.modified("a").unwrap(), 992);
        w.clock = 1_004;
        w.create_dir("a/b").unwrap();
        assert_eq!(
            (w.modified("a").unwrap(), w.modified("a/b").unwrap()),
            (996, 996)
        );
        w.clock = 2;
        w.create_dir("c").unwrap();
        assert_eq!(w.modified("c").unwrap(), -4, "rounds down below zero too");
    }
}
