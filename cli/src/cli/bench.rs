//! `lockbydir bench`: the benchmark lives in its own crate (`lockbydir-bench`, `bench/`);
//! this gives it the command's global options and runtime.

use std::path::{Path, PathBuf};

use lockbydir::Runtime;
pub use lockbydir_bench::{BenchArgs, bench};

use super::Global;

impl lockbydir_bench::Program for Global {
    fn lock_component(&self) -> Option<&Path> {
        self.lock_component.as_deref()
    }

    fn no_cache(&self) -> bool {
        self.no_cache
    }

    fn runtime(&self) -> anyhow::Result<Runtime> {
        Global::runtime(self)
    }

    fn absolute_dir(&self, dir: &Path, role: &str) -> anyhow::Result<PathBuf> {
        super::absolute_dir(dir, role)
    }
}
