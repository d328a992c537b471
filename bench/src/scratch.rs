//! Scratch directories of `demo` and `bench`, removed when dropped.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// A fresh directory `<parent>/<prefix>-XXXXXX` (a unique name, made mode 0700 by
/// `tempfile`, so no other user can plant one first), removed with everything in it when
/// dropped. The field `0` is its path.
pub struct ScratchDir(
    pub PathBuf,
    #[allow(
        dead_code,
        reason = "held only for its drop, which removes the directory"
    )]
    tempfile::TempDir,
);

impl ScratchDir {
    /// Create a new scratch directory under `parent`.
    pub fn new(parent: &Path, prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(parent)
            .with_context(|| format!("create a scratch directory in {}", parent.display()))?;
        Ok(ScratchDir(dir.path().to_owned(), dir))
    }
}
