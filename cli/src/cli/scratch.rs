//! Scratch directories of `demo` and `bench`, removed when dropped.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `<parent>/<prefix>-<pid>`, created empty, removed with everything in it when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// Create (or empty) the scratch directory for this process under `parent`.
    pub fn new(parent: &Path, prefix: &str) -> anyhow::Result<Self> {
        let dir = parent.join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
