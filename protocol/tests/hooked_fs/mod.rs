//! A real directory ([`StdFs`]) seen through a test's hooks: a test's filesystem says only
//! what it does differently (count listings, pause a rename, die after a mark, keep no
//! timestamps); every other operation goes to the directory unchanged.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use lockbydir_protocol::{Fs, FsError, StdFs};

/// What a test's filesystem does differently. Every method gets the real directory and
/// defaults to what it does.
pub trait Hooks {
    fn create_dir(&self, fs: &StdFs, path: &str) -> Result<(), FsError> {
        fs.create_dir(path)
    }
    fn remove_dir(&self, fs: &StdFs, path: &str) -> Result<(), FsError> {
        fs.remove_dir(path)
    }
    fn rename(&self, fs: &StdFs, from: &str, to: &str) -> Result<(), FsError> {
        fs.rename(from, to)
    }
    fn read_dir(&self, fs: &StdFs, path: &str) -> Result<Vec<String>, FsError> {
        fs.read_dir(path)
    }
    fn modified_ms(&self, fs: &StdFs, path: &str) -> Result<Option<u64>, FsError> {
        fs.modified_ms(path)
    }
    fn exists(&self, fs: &StdFs, path: &str) -> Result<bool, FsError> {
        fs.exists(path)
    }
}

/// A directory whose timestamps the protocol cannot see (as on a filesystem that keeps
/// none), so that a test's manual clock alone decides expiry.
#[derive(Clone, Default)]
pub struct NoClock;

impl Hooks for NoClock {
    fn modified_ms(&self, _fs: &StdFs, _path: &str) -> Result<Option<u64>, FsError> {
        Ok(None)
    }
}

/// [`StdFs`] at `root` through `hooks`.
#[derive(Clone)]
pub struct HookedFs<H> {
    pub fs: StdFs,
    pub hooks: H,
}

impl<H> HookedFs<H> {
    pub fn new(root: &std::path::Path, hooks: H) -> Self {
        HookedFs {
            fs: StdFs::new(root),
            hooks,
        }
    }
}

impl<H: Hooks> Fs for HookedFs<H> {
    fn create_dir(&self, path: &str) -> Result<(), FsError> {
        self.hooks.create_dir(&self.fs, path)
    }
    fn remove_dir(&self, path: &str) -> Result<(), FsError> {
        self.hooks.remove_dir(&self.fs, path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        self.hooks.rename(&self.fs, from, to)
    }
    fn read_dir(&self, path: &str) -> Result<Vec<String>, FsError> {
        self.hooks.read_dir(&self.fs, path)
    }
    fn modified_ms(&self, path: &str) -> Result<Option<u64>, FsError> {
        self.hooks.modified_ms(&self.fs, path)
    }
    fn exists(&self, path: &str) -> Result<bool, FsError> {
        self.hooks.exists(&self.fs, path)
    }
}
