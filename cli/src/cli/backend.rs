//! `--backend` and `--etcd-endpoints` of `run`, `exec` and `status`: where the locks live.

use std::path::Path;

use clap::{Args, ValueEnum};
use lockbydir::{LockService, Locks, PluginRunner};

use super::Global;
#[cfg(not(feature = "etcd"))]
use super::exit::{self, Failure};

/// Where the locks live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Lockdirs in the lock directory (--locks): one machine, or a shared POSIX filesystem.
    #[default]
    Lockdir,
    /// An etcd cluster (--etcd-endpoints): processes on several machines.
    Etcd,
}

/// The backend options.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where the locks live: `lockdir` (the lock directory) or `etcd` (an etcd cluster, for
    /// processes on several machines; needs a lockbydir built with `--features etcd`).
    #[arg(long, value_enum, default_value_t = Kind::Lockdir, value_name = "KIND")]
    backend: Kind,
    /// The etcd cluster's client URLs, comma-separated (with --backend etcd).
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
    /// Whether the locks are in etcd.
    pub fn is_etcd(&self) -> bool {
        self.backend == Kind::Etcd
    }

    /// The environment variable that tells a command where its lock lives, for etcd.
    pub fn etcd_env(&self) -> String {
        self.etcd_endpoints.join(",")
    }

    /// The locks of `exec` and `status`: the lock component in `lock_dir`, or etcd.
    pub fn locks(&self, global: &Global, lock_dir: &Path) -> anyhow::Result<Locks> {
        match self.backend {
            Kind::Lockdir => {
                let runtime = global.runtime()?;
                Ok(Locks::new(Box::new(LockService::new(&runtime, lock_dir)?)))
            }
            Kind::Etcd => self.etcd(),
        }
    }

    /// `runner`, serving its plugins' locks from this backend.
    pub fn plugin_runner(&self, runner: PluginRunner) -> anyhow::Result<PluginRunner> {
        match self.backend {
            Kind::Lockdir => Ok(runner),
            Kind::Etcd => {
                // Fail at start, naming the endpoints, if etcd is not there.
                drop(self.etcd()?);
                self.etcd_runner(runner)
            }
        }
    }

    fn etcd(&self) -> anyhow::Result<Locks> {
        etcd_locks(&self.etcd_endpoints)
    }

    fn etcd_runner(&self, runner: PluginRunner) -> anyhow::Result<PluginRunner> {
        etcd_runner(&self.etcd_endpoints, runner)
    }
}

/// The locks of the etcd cluster at `endpoints` (checked: it answers).
#[cfg(feature = "etcd")]
pub fn etcd_locks(endpoints: &[String]) -> anyhow::Result<Locks> {
    let backend = lockbydir::etcd::EtcdBackend::connect(endpoints)?;
    Ok(Locks::new(Box::new(backend)))
}

/// `runner`, serving each plugin's locks from its own connection to the etcd cluster at
/// `endpoints`.
#[cfg(feature = "etcd")]
pub fn etcd_runner(endpoints: &[String], runner: PluginRunner) -> anyhow::Result<PluginRunner> {
    let endpoints = endpoints.to_vec();
    Ok(runner.with_backend(std::sync::Arc::new(move || {
        let backend = lockbydir::etcd::EtcdBackend::connect(&endpoints)?;
        Ok(Box::new(backend) as Box<dyn lockbydir::LockBackend>)
    })))
}

#[cfg(not(feature = "etcd"))]
pub fn etcd_locks(_: &[String]) -> anyhow::Result<Locks> {
    Err(without_etcd())
}

#[cfg(not(feature = "etcd"))]
pub fn etcd_runner(_: &[String], _: PluginRunner) -> anyhow::Result<PluginRunner> {
    Err(without_etcd())
}

#[cfg(not(feature = "etcd"))]
fn without_etcd() -> anyhow::Error {
    Failure::error(
        exit::UNAVAILABLE,
        "--backend etcd: this lockbydir was built without the etcd backend; build it with \
         `cargo build --release --features etcd` (needs protoc: Debian's protobuf-compiler and \
         libprotobuf-dev)",
    )
}
