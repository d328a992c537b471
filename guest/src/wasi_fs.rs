//! The protocol's [`Fs`] directly on `wasi:filesystem`, relative to the preopened lock
//! directory's descriptor, with each lock's own directories kept open.
//!
//! Rust's `std::fs` on wasm32-wasip2 goes through wasi-libc, which resolves every path from
//! the preopen again and stats every directory entry it lists (to fill in inode numbers). The
//! protocol needs neither: it names everything relative to one directory and only reads names.
//! Calling wasi:filesystem directly keeps each protocol step to the calls it needs.
//!
//! # Descriptors of a lock's directories
//!
//! Almost every protocol step names an entry directly inside a lockdir
//! (`bed.lockdir/free.3`) or a queue directory (`bed.queue/wait.…`), or lists one of them. A
//! host built on cap-std (wasmtime) resolves a path of several components by opening,
//! checking and closing each parent directory on every call, so a rename of
//! `bed.lockdir/free.3` costs five system calls instead of one. [`WasiFs`] therefore keeps a
//! descriptor of each lockdir and queue directory it uses open (at most [`MAX_CACHED`], in a
//! per-thread cache shared by every lock of the component) and makes those calls relative to
//! it, with the single-component entry name. Every other path (the lock directory itself,
//! staging and probe directories and their contents, the lock's directories' own names) is
//! still resolved from the preopen, as before. A `stat` of an entry, by which the component
//! asks its host to be woken (see `crate::env`), always goes through the preopen too.
//!
//! A descriptor that is open on a directory follows that directory, not its name. A lockdir
//! can be removed and made again under the same name (an administrator's `rm -r`; and the
//! protocol creates a lockdir by renaming a staging directory onto the name, replacing an
//! empty directory that stands there), and so can a queue directory (`lockbydir prune`
//! removes both). A cached descriptor of the old directory then refers to a dead one, which
//! on Linux behaves as an empty directory in which nothing can be made: creating, removing,
//! renaming and stat'ing entries in it fail with `NoEntry`, listing it gives no names, and on
//! a network filesystem its handle goes stale (wasmtime reports `ESTALE` as `Io`). None of
//! those answers is believed from a cached descriptor as it stands: after a call through a
//! cached descriptor that fails (with anything but `Exist` or `NotEmpty`, which a dead, empty
//! directory never reports) or a listing that comes back empty, the descriptor itself is
//! stat'ed. A directory that has been removed, or replaced by a rename onto its name, has no
//! link left (its link count is 0), and a stale handle fails the stat: then the cache entry
//! is dropped and the call is made once more through a freshly opened descriptor, whose
//! answer stands. A directory with a link is alive, and its answer stands (one `stat` instead
//! of closing, opening, checking and calling again). A dead directory cannot give any other
//! answer (it is empty, and stays so: nothing can be created in an unlinked directory), so
//! every answer the protocol acts on comes from the directory that has the name at the time
//! of the call, or just before it. That is no weaker than resolving the path: cap-std too
//! opens the parent first and operates relative to it afterwards. The retried call is safe
//! because the failed one changed nothing; the retry is the same atomic step, made a moment
//! later.
//!
//! What a cached descriptor does not notice is a directory *renamed away* (by hand; the
//! protocol never does this, and this component drops its own entry when it renames or
//! removes a lock's directory by name): it keeps following the moved directory, which is
//! alive. The README lists anyone with direct access to the lock directory renaming lockdirs
//! among what the lock does not defend against.
//!
//! Descriptors are opened with `DescriptorFlags::READ` only: wasmtime-wasi checks creating,
//! removing and renaming entries against the permissions of the preopen the descriptor was
//! opened from, which `open_at` hands down, not against the descriptor's own flags
//! (`MUTATE_DIRECTORY` is not consulted by `open_at`).

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use lockbydir_protocol::name::LOCKDIR_SUFFIX;
use lockbydir_protocol::{Fs, FsError, FsErrorKind};
use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

/// How many times a listing that failed while its directory still exists is repeated (an
/// entry renamed during the listing can fail it).
const LISTING_RETRIES: usize = 32;

/// How many descriptors of lock's directories are kept open at most; beyond that the oldest
/// is closed.
const MAX_CACHED: usize = 64;

/// The name of a lock's queue directory ends with this (`bed.queue`).
const QUEUE_SUFFIX: &str = ".queue";

thread_local! {
    /// The preopened lock directory: the one mapped as `.`, else the first preopen.
    static LOCK_DIR: OnceCell<Option<Rc<Descriptor>>> = const { OnceCell::new() };
    /// Open lockdirs and queue directories by name (`bed.lockdir`, `bed.queue`), oldest
    /// first. See the module documentation.
    static CACHED: RefCell<Vec<(String, Rc<Descriptor>)>> = const { RefCell::new(Vec::new()) };
}

/// The cached descriptor of the lock's directory `name`, if any.
fn cached(name: &str) -> Option<Rc<Descriptor>> {
    CACHED.with_borrow(|dirs| {
        dirs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| Rc::clone(d))
    })
}

/// Forget (and, once no call uses it, close) the cached descriptor of the lock's directory `name`.
fn forget(name: &str) {
    CACHED.with_borrow_mut(|dirs| dirs.retain(|(n, _)| n != name));
}

/// [`forget`] `path` if it is a lock's directory's own name.
fn forget_if_cached_kind(path: &str) {
    if is_cached_kind(path) {
        forget(path);
    }
}

/// Cache `dir` as the lock's directory `name`'s descriptor, closing the oldest one if the
/// cache is full.
fn remember(name: &str, dir: Rc<Descriptor>) {
    CACHED.with_borrow_mut(|dirs| {
        dirs.retain(|(n, _)| n != name);
        if dirs.len() >= MAX_CACHED {
            dirs.remove(0);
        }
        dirs.push((name.to_owned(), dir));
    });
}

/// Whether `name` is one ordinary path component (not empty, `.` or `..`).
fn is_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Whether `path` is a lock's own directory, whose descriptor is cached: one component
/// ending in `.lockdir` or `.queue`.
fn is_cached_kind(path: &str) -> bool {
    is_component(path)
        && [LOCKDIR_SUFFIX, QUEUE_SUFFIX]
            .iter()
            .any(|suffix| path.len() > suffix.len() && path.ends_with(suffix))
}

/// `(directory, entry)` if `path` names an entry directly inside a lock's own directory.
fn in_cached_kind(path: &str) -> Option<(&str, &str)> {
    let (dir, entry) = path.split_once('/')?;
    (is_cached_kind(dir) && is_component(entry)).then_some((dir, entry))
}

/// Whether the directory open as `dir` still has a name: a removed directory, or one
/// replaced by a rename onto its name, has no link left, and a stale handle cannot be
/// stat'ed.
fn is_linked(dir: &Descriptor) -> bool {
    dir.stat().is_ok_and(|stat| stat.link_count > 0)
}

/// Whether a failure seen through a cached descriptor may come from that descriptor's
/// directory being dead, so that the call must be made again on a fresh descriptor. Only
/// `Exist` and `NotEmpty` cannot: a dead directory is empty.
fn may_be_dead(code: ErrorCode) -> bool {
    !matches!(code, ErrorCode::Exist | ErrorCode::NotEmpty)
}

/// The names in the directory `dir`. wasmtime-wasi opens the directory afresh (`.` relative
/// to the descriptor) for every `read-directory`, so each listing starts at the beginning.
fn list(dir: &Descriptor) -> Result<Vec<String>, ErrorCode> {
    let entries = dir.read_directory()?;
    let mut names = Vec::new();
    while let Some(entry) = entries.read_directory_entry()? {
        names.push(entry.name);
    }
    Ok(names)
}

/// [`Fs`] on the preopened lock directory.
#[derive(Clone)]
pub struct WasiFs {
    dir: Option<Rc<Descriptor>>,
}

impl WasiFs {
    /// The lock directory this component was given.
    pub fn lock_dir() -> Self {
        let dir = LOCK_DIR.with(|cell| {
            cell.get_or_init(|| {
                let mut preopens = get_directories();
                let index = preopens
                    .iter()
                    .position(|(_, name)| name == ".")
                    .unwrap_or(0);
                (!preopens.is_empty()).then(|| Rc::new(preopens.swap_remove(index).0))
            })
            .clone()
        });
        WasiFs { dir }
    }

    fn dir(&self) -> Result<&Descriptor, FsError> {
        self.dir.as_deref().ok_or_else(|| {
            FsError::new(
                FsErrorKind::Other,
                "no directory was preopened for the lock component (the host must preopen the lock directory as `.`)",
            )
        })
    }

    /// Open the lock's directory `name` from the preopen and cache its descriptor.
    fn open_cached(&self, name: &str) -> Result<Rc<Descriptor>, ErrorCode> {
        let root = self.dir().map_err(|_| ErrorCode::BadDescriptor)?;
        let dir = Rc::new(root.open_at(
            PathFlags::empty(),
            name,
            OpenFlags::DIRECTORY,
            DescriptorFlags::READ,
        )?);
        remember(name, Rc::clone(&dir));
        Ok(dir)
    }

    /// `op` on the lock's directory `name`'s descriptor: the cached one, and if that answer
    /// is `doubtful` (it may come from a dead directory, see the module documentation) and
    /// the directory has no link left, once more on a freshly opened one. The outer error is
    /// that of opening the directory afresh.
    fn on_cached<T>(
        &self,
        name: &str,
        op: impl Fn(&Descriptor) -> Result<T, ErrorCode>,
        doubtful: impl Fn(&Result<T, ErrorCode>) -> bool,
    ) -> Result<Result<T, ErrorCode>, ErrorCode> {
        if let Some(dir) = cached(name) {
            let result = op(&dir);
            if !doubtful(&result) || is_linked(&dir) {
                return Ok(result);
            }
            forget(name);
        }
        let dir = self.open_cached(name)?;
        Ok(op(&dir))
    }

    /// `op` on the entry `path` names: through the descriptor of the lock's directory `path`
    /// is in, if it is in one (`op` then gets the single-component entry name), else relative
    /// to the preopen. When that directory cannot be opened the call is made through the
    /// preopen too, so that its error is exactly the one the path gives.
    fn on_entry<T>(
        &self,
        path: &str,
        op: impl Fn(&Descriptor, &str) -> Result<T, ErrorCode>,
    ) -> Result<T, FsError> {
        if let Some((dir_name, entry)) = in_cached_kind(path)
            && let Ok(result) = self.on_cached(
                dir_name,
                |dir| op(dir, entry),
                |result| matches!(result, Err(code) if may_be_dead(*code)),
            )
        {
            return result.map_err(fs_error);
        }
        op(self.dir()?, path).map_err(fs_error)
    }

    /// Whether `path` is a directory now (following a symlink, as listing it does).
    fn is_dir(&self, path: &str) -> Result<bool, FsError> {
        if path == "." {
            return Ok(true);
        }
        Ok(self
            .dir()?
            .stat_at(PathFlags::SYMLINK_FOLLOW, path)
            .is_ok_and(|s| s.type_ == DescriptorType::Directory))
    }

    /// Whether `path` is gone, by one `stat-at` relative to the preopen (never through a
    /// cached lockdir descriptor: this is the call a host with wake-ups watches, see
    /// `crate::env`). Anything but "no such entry" counts as still there.
    pub fn is_gone_from_preopen(&self, path: &str) -> bool {
        self.dir().is_ok_and(|dir| {
            matches!(
                dir.stat_at(PathFlags::empty(), path),
                Err(ErrorCode::NoEntry)
            )
        })
    }

    fn list_once(&self, path: &str) -> Result<Vec<String>, ErrorCode> {
        let root = self.dir().map_err(|_| ErrorCode::BadDescriptor)?;
        if path == "." {
            return list(root);
        }
        if is_cached_kind(path) {
            // An empty listing through a cached descriptor is re-checked like a failure: a
            // dead directory lists as empty, and an empty lockdir means "no state".
            return self.on_cached(path, list, |result| match result {
                Ok(names) => names.is_empty(),
                Err(code) => may_be_dead(*code),
            })?;
        }
        let dir = root.open_at(
            PathFlags::empty(),
            path,
            OpenFlags::DIRECTORY,
            DescriptorFlags::READ,
        )?;
        list(&dir)
    }
}

fn fs_error(code: ErrorCode) -> FsError {
    let kind = match code {
        ErrorCode::NoEntry => FsErrorKind::NotFound,
        ErrorCode::Exist => FsErrorKind::AlreadyExists,
        _ => FsErrorKind::Other,
    };
    FsError::new(kind, describe(code))
}

/// What the filesystem said, as POSIX says it: `Permission denied (EACCES)`. WASI's messages
/// read "Permission denied, similar to `EACCES` in POSIX."; codes without a POSIX name keep
/// their WASI name.
///
/// `io` is not said to be EIO: a host's WASI also gives it for every errno it has no code
/// for (wasmtime-wasi 48 does so for EROFS, EDQUOT, EXDEV, ETXTBSY and EAGAIN among others,
/// and for ESTALE, which WASI has no code for at all).
fn describe(code: ErrorCode) -> String {
    if matches!(code, ErrorCode::Io) {
        return "I/O error (EIO, or an error the host's WASI has no code for, such as EROFS)"
            .to_owned();
    }
    let message = code.message();
    match message.split_once(", similar to `") {
        Some((what, rest)) => format!("{what} ({})", rest.split('`').next().unwrap_or_default()),
        None => format!("{} ({})", message.trim_end_matches('.'), code.name()),
    }
}

impl Fs for WasiFs {
    fn create_dir(&self, path: &str) -> Result<(), FsError> {
        // Making or removing a lock's directory by name changes which directory has that name.
        forget_if_cached_kind(path);
        self.on_entry(path, |dir, path| dir.create_directory_at(path))
    }

    fn remove_dir(&self, path: &str) -> Result<(), FsError> {
        forget_if_cached_kind(path);
        self.on_entry(path, |dir, path| dir.remove_directory_at(path))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        if let (Some((dir_name, from_entry)), Some((to_dir_name, to_entry))) =
            (in_cached_kind(from), in_cached_kind(to))
            && dir_name == to_dir_name
            && let Ok(result) = self.on_cached(
                dir_name,
                |dir| dir.rename_at(from_entry, dir, to_entry),
                |result| matches!(result, Err(code) if may_be_dead(*code)),
            )
        {
            return result.map_err(fs_error);
        }
        // Renaming a lock's directory away, or onto its name, changes which directory has
        // that name.
        forget_if_cached_kind(from);
        forget_if_cached_kind(to);
        let dir = self.dir()?;
        dir.rename_at(from, dir, to).map_err(fs_error)
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let mut last = ErrorCode::Io;
        for _ in 0..LISTING_RETRIES {
            match self.list_once(path) {
                Ok(names) => return Ok(names),
                // An entry renamed during the listing fails it with NoEntry although the
                // directory is still there: that race, and only that, is retried. Anything
                // else (EACCES, ENOTDIR, ELOOP, I/O), or a directory that is really gone, is
                // what the filesystem says, reported as it is.
                Err(ErrorCode::NoEntry) if self.is_dir(path)? => last = ErrorCode::NoEntry,
                Err(code) => return Err(fs_error(code)),
            }
        }
        let mut err = fs_error(last);
        err.kind = FsErrorKind::Other;
        err.message = format!(
            "listing kept failing while entries changed: {}",
            err.message
        );
        Err(err)
    }

    fn exists(&self, path: &str) -> Result<bool, FsError> {
        // One `stat`; "gone" through a cached descriptor is re-checked (see `on_cached`).
        match self.on_entry(path, |dir, path| dir.stat_at(PathFlags::empty(), path)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind == FsErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn modified_ms(&self, path: &str) -> Result<Option<u64>, FsError> {
        // A lockdir's own mtime is read by name (never from a cached descriptor, which could
        // be a dead directory's): it decides takeovers.
        let stat = self.on_entry(path, |dir, path| dir.stat_at(PathFlags::empty(), path))?;
        Ok(stat
            .data_modification_timestamp
            .map(|t| t.seconds * 1000 + u64::from(t.nanoseconds) / 1_000_000))
    }
}
