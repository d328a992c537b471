//! `--backend` and `--etcd-endpoints` of `run`, `exec` and `status`: where the locks live,
//! given to the host library's one factory ([`Place`]).

use std::path::Path;

use clap::Args;
use lockbydir::Place;
use lockbydir::backend::Backend;

use super::Global;
use super::exit::{self, Failure};

/// The backend options.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where the locks live: `lockdir` (the lock directory) or `etcd` (an etcd cluster, for
    /// processes on several machines; needs a lockbydir built with `--features etcd`).
    #[arg(long, default_value = "lockdir", value_name = "KIND")]
    backend: String,
    /// The cluster's client URLs, comma-separated (with a backend other than `lockdir`).
    #[arg(
        long,
        env = "LOCKBYDIR_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379",
        value_name = "URL,..."
    )]
    etcd_endpoints: Vec<String>,
}

impl BackendArgs {
    /// Whether the locks are in a lock directory (the default), whose path then names them.
    pub fn in_lock_dir(&self) -> bool {
        self.backend == "lockdir"
    }

    /// A `--locks DIR` given on the command line beside a backend that keeps no lock
    /// directory would be ignored: refused (exit 64), saying so.
    pub fn refuse_lock_dir(&self, global: &Global) -> anyhow::Result<()> {
        if self.in_lock_dir() || !global.locks_flag {
            return Ok(());
        }
        Err(Failure::error(
            exit::USAGE,
            format!(
                "--locks names a lock directory, but --backend {} keeps its locks elsewhere \
                 (--etcd-endpoints): leave --locks out",
                lockbydir::escape(&self.backend)
            ),
        ))
    }

    /// Where the locks live, with `lock_dir` as the lock directory: a backend this build does
    /// not have is refused here, saying how to get it.
    pub fn place(&self, lock_dir: &Path) -> anyhow::Result<Place> {
        Place::from_kind(&self.backend, lock_dir, &self.etcd_endpoints)
            .map_err(|e| Failure::error(exit::UNAVAILABLE, format!("--backend {e}")))
    }

    /// The locks of `exec` and `status`, opened (for a cluster: checked to answer).
    pub fn open(&self, global: &Global, lock_dir: &Path) -> anyhow::Result<Box<dyn Backend>> {
        let place = self.place(lock_dir)?;
        let runtime = global.runtime()?;
        Ok(place.open(&runtime)?)
    }
}
