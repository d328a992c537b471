//! The command line: global options and the subcommands.

mod bench;
mod component;
mod demo;
mod exec;
mod prune;
mod run;
mod scratch;
mod signals;
mod status;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use lockbydir::{Runtime, RuntimeBuilder};

/// Locks made of directories, for sandboxed WebAssembly plugins and plain commands.
///
/// Lock N is the directory N.lockdir in the lock directory (--locks). Plugins reach it only
/// through the lockbydir:lock/lock interface; commands through `exec`.
#[derive(Parser, Debug)]
#[command(name = "lockbydir", version, propagate_version = true)]
pub struct Cli {
    /// The lock directory [default: the current directory].
    #[arg(long, global = true, env = "LOCKBYDIR_DIR", value_name = "DIR")]
    locks: Option<PathBuf>,
    /// Use this lock component instead of the one built into lockbydir.
    #[arg(long, global = true, value_name = "FILE")]
    lock_component: Option<PathBuf>,
    /// Do not cache compiled components on disk (see LOCKBYDIR_CACHE_DIR).
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Run(run::RunArgs),
    Exec(exec::ExecArgs),
    Status(status::StatusArgs),
    Demo(demo::DemoArgs),
    Component(component::ComponentArgs),
    Bench(bench::BenchArgs),
    Prune(prune::PruneArgs),
}

/// Parse the command line and run it; returns the process exit code.
pub fn main() -> anyhow::Result<u8> {
    let cli = Cli::parse();
    let global = Global {
        locks: cli.locks.clone().unwrap_or_else(|| PathBuf::from(".")),
        lock_component: cli.lock_component.clone(),
        no_cache: cli.no_cache,
    };
    match cli.command {
        Command::Run(args) => run::run(&global, args),
        Command::Exec(args) => exec::exec(&global, args),
        Command::Status(args) => status::status(&global, args),
        Command::Demo(args) => demo::demo(&global, args),
        Command::Component(args) => component::component(args),
        Command::Bench(args) => bench::bench(&global, args),
        Command::Prune(args) => prune::prune(&global, args),
    }
}

/// Options every subcommand shares.
pub struct Global {
    /// The lock directory.
    pub locks: PathBuf,
    /// A lock component to use instead of the embedded one.
    pub lock_component: Option<PathBuf>,
    /// Skip the compiled-code cache.
    pub no_cache: bool,
}

impl Global {
    /// Build the runtime these options describe.
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        let mut builder = RuntimeBuilder::new();
        if let Some(file) = &self.lock_component {
            builder = builder.lock_component(file);
        }
        if self.no_cache {
            builder = builder.no_cache();
        }
        Ok(builder.build()?)
    }

    /// The lock directory as an absolute path, checked to exist.
    pub fn lock_dir(&self) -> anyhow::Result<PathBuf> {
        absolute_dir(&self.locks, "lock directory")
    }
}

/// `dir` made absolute, after checking that it is an existing directory.
pub fn absolute_dir(dir: &Path, role: &str) -> anyhow::Result<PathBuf> {
    let meta = std::fs::metadata(dir).with_context(|| {
        format!(
            "{role} {} cannot be used (create it first, or pass another)",
            dir.display()
        )
    })?;
    anyhow::ensure!(meta.is_dir(), "{role} {} is not a directory", dir.display());
    std::path::absolute(dir).with_context(|| format!("{role} {}", dir.display()))
}

/// A clap value parser for durations.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    lockbydir::duration::parse_ms(s).map_err(|e| e.to_string())
}
