//! The protocol's [`Fs`] directly on `wasi:filesystem`, relative to the preopened lock
//! directory's descriptor.
//!
//! Rust's `std::fs` on wasm32-wasip2 goes through wasi-libc, which resolves every path from
//! the preopen again and stats every directory entry it lists (to fill in inode numbers). The
//! protocol needs neither: it names everything relative to one directory and only reads names.
//! Calling wasi:filesystem directly keeps each protocol step to the calls it needs.

use std::cell::OnceCell;
use std::rc::Rc;

use lockbydir_protocol::{Fs, FsError, FsErrorKind};
use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

/// How many times a listing that failed while its directory still exists is repeated (an
/// entry renamed during the listing can fail it).
const LISTING_RETRIES: usize = 32;

thread_local! {
    /// The preopened lock directory: the one mapped as `.`, else the first preopen.
    static LOCK_DIR: OnceCell<Option<Rc<Descriptor>>> = const { OnceCell::new() };
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

    fn list_once(&self, path: &str) -> Result<Vec<String>, ErrorCode> {
        let root = self.dir().map_err(|_| ErrorCode::BadDescriptor)?;
        let opened;
        let dir = if path == "." {
            root
        } else {
            opened = root.open_at(
                PathFlags::empty(),
                path,
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            )?;
            &opened
        };
        let entries = dir.read_directory()?;
        let mut names = Vec::new();
        while let Some(entry) = entries.read_directory_entry()? {
            names.push(entry.name);
        }
        Ok(names)
    }
}

fn fs_error(code: ErrorCode) -> FsError {
    let kind = match code {
        ErrorCode::NoEntry => FsErrorKind::NotFound,
        ErrorCode::Exist => FsErrorKind::AlreadyExists,
        _ => FsErrorKind::Other,
    };
    FsError::new(kind, format!("{} ({code:?})", code.message()))
}

impl Fs for WasiFs {
    fn create_dir(&self, path: &str) -> Result<(), FsError> {
        self.dir()?.create_directory_at(path).map_err(fs_error)
    }

    fn remove_dir(&self, path: &str) -> Result<(), FsError> {
        self.dir()?.remove_directory_at(path).map_err(fs_error)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let dir = self.dir()?;
        dir.rename_at(from, dir, to).map_err(fs_error)
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        let mut last = ErrorCode::Io;
        for _ in 0..LISTING_RETRIES {
            match self.list_once(path) {
                Ok(names) => return Ok(names),
                Err(code) => {
                    // Only a directory that is really gone is NotFound.
                    let exists =
                        path == "." || self.dir()?.stat_at(PathFlags::empty(), path).is_ok();
                    if !exists {
                        return Err(fs_error(code));
                    }
                    last = code;
                }
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

    fn modified_ms(&self, path: &str) -> Result<Option<u64>, FsError> {
        let stat = self
            .dir()?
            .stat_at(PathFlags::empty(), path)
            .map_err(fs_error)?;
        Ok(stat
            .data_modification_timestamp
            .map(|t| t.seconds * 1000 + u64::from(t.nanoseconds) / 1_000_000))
    }
}
