//! The command line: global options and the subcommands.

mod backend;
mod bench;
mod component;
mod compose;
mod dashes;
mod demo;
mod exec;
mod exit;
mod flock_flags;
mod generate;
mod lock_dir;
mod lock_failure;
mod process;
mod prune;
mod repair;
mod run;
mod scratch;
mod signals;
mod status;
mod trap;
mod version;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use lockbydir::{Runtime, RuntimeBuilder};

/// Locks made of directories, for sandboxed WebAssembly plugins and plain commands.
///
/// Lock N is the directory N.lockdir in the lock directory (--locks). Plugins reach it only
/// through the lockbydir:lock/lock interface; commands through `exec`.
///
/// Without --locks or LOCKBYDIR_DIR, the lock directory is lockbydir-<uid> in $TMPDIR (else
/// /tmp), created 0700 if missing: the same for every command of this user, wherever it runs
/// from. A directory given with --locks or LOCKBYDIR_DIR is never created: it must exist.
/// `--locks .` uses the current directory.
#[derive(Parser, Debug)]
#[command(name = "lockbydir", version, propagate_version = true)]
pub struct Cli {
    /// The lock directory, which must exist [default: $TMPDIR/lockbydir-<uid>, created 0700
    /// if missing; `.` for the current directory].
    #[arg(long, global = true, env = "LOCKBYDIR_DIR", value_name = "DIR")]
    locks: Option<PathBuf>,
    /// Use this lock component instead of the one built into lockbydir.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = DEVELOPER_HEADING
    )]
    lock_component: Option<PathBuf>,
    /// Do not cache compiled components on disk (see LOCKBYDIR_CACHE_DIR).
    #[arg(long, global = true, help_heading = DEVELOPER_HEADING)]
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
    Compose(compose::ComposeArgs),
    Bench(bench::BenchArgs),
    Repair(repair::RepairArgs),
    Prune(prune::PruneArgs),
    Completions(generate::CompletionsArgs),
    Man(generate::ManArgs),
}

/// Where `lockbydir --help` lists the options for developing lockbydir itself.
const DEVELOPER_HEADING: &str = "Options for developing lockbydir";

/// The options for developing lockbydir itself (by their ids): listed by `lockbydir --help`
/// only, accepted before and after any subcommand.
const DEVELOPER_OPTIONS: [&str; 2] = ["lock_component", "no_cache"];

/// The command line's definition with its version texts: what is parsed, and what
/// completions and man pages are generated from.
pub fn command() -> clap::Command {
    let command = Cli::command()
        .version(version::short())
        .long_version(version::long());
    // clap copies a global option into every subcommand that has no option of that id. Giving
    // each subcommand a hidden copy first keeps the developer options working there (their
    // values still reach the top level, as a global option's do) without listing them in
    // every subcommand's help.
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| DEVELOPER_OPTIONS.contains(&a.get_id().as_str()))
        .map(|a| a.clone().hide(true))
        .collect();
    command.mut_subcommands(|sub| sub.args(hidden.clone()))
}

/// Parse the command line and run it; returns the process exit code. lockbydir's own
/// failures are reported here and exit with a code of module `exit` (64 for a bad command
/// line instead of clap's 2), never with the 0-63 a command or plugin uses for itself.
pub fn main() -> anyhow::Result<u8> {
    let args_os: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = command()
        .try_get_matches_from(&args_os)
        .and_then(|matches| {
            let cli = Cli::from_arg_matches(&matches)?;
            let locks_flag = matches.value_source("locks") == Some(ValueSource::CommandLine);
            Ok((cli, locks_flag))
        });
    let (cli, locks_flag) = match parsed {
        Ok(parsed) => parsed,
        Err(mut e) => {
            // For the hint only: a command line that is not UTF-8 is shown as best it can.
            let args: Vec<String> = args_os
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            dashes::add_hint(&mut e, &args, |args| {
                let matches = command().try_get_matches_from(args).ok()?;
                matches.subcommand_name().map(str::to_owned)
            });
            let _ = e.print();
            return Ok(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    match dispatch(cli, locks_flag) {
        Ok(code) => Ok(code),
        Err(e) => {
            let e = trap::readable_error(e);
            print_error(&e, "error");
            Ok(exit::code_of(&e))
        }
    }
}

/// Print one of lockbydir's own failures on stderr: `lockbydir: <what>: <message>`, then the
/// lines of detail it carries (a backtrace's frames), each on its own line. Everything is
/// escaped: an error can quote a holder label, a path from the lock directory or a name a
/// plugin chose.
pub fn print_error(e: &anyhow::Error, what: &str) {
    eprintln!(
        "lockbydir: {what}: {}",
        lockbydir::escape(&format!("{e:#}"))
    );
    let details = e
        .chain()
        .find_map(|c| c.downcast_ref::<exit::Failure>())
        .map_or(&[][..], |f| &f.details[..]);
    for line in details {
        eprintln!("{}", lockbydir::escape(line));
    }
}

fn dispatch(cli: Cli, locks_flag: bool) -> anyhow::Result<u8> {
    let global = Global {
        locks: cli.locks.clone(),
        locks_flag,
        lock_component: cli.lock_component.clone(),
        no_cache: cli.no_cache,
    };
    match cli.command {
        Command::Run(args) => run::run(&global, args),
        Command::Exec(args) => exec::exec(&global, args),
        Command::Status(args) => status::status(&global, args),
        Command::Demo(args) => demo::demo(&global, args),
        Command::Component(args) => component::component(args),
        Command::Compose(args) => compose::compose(args),
        Command::Bench(args) => bench::bench(&global, args),
        Command::Repair(args) => repair::repair(&global, args),
        Command::Prune(args) => prune::prune(&global, args),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
    }
}

/// Options every subcommand shares.
pub struct Global {
    /// The lock directory given (`--locks`, `LOCKBYDIR_DIR`); `None` for the default.
    pub locks: Option<PathBuf>,
    /// Whether it was given with `--locks` (not `LOCKBYDIR_DIR`, a default for every
    /// command, which a lock given as a path overrides).
    pub locks_flag: bool,
    /// A lock component to use instead of the embedded one.
    pub lock_component: Option<PathBuf>,
    /// Skip the compiled-code cache.
    pub no_cache: bool,
}

impl Global {
    /// Build the runtime these options describe.
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        // What the library reports about its cache, as a warning line.
        let report = |event: &lockbydir::report::Event<'_>| eprintln!("lockbydir: {event}");
        let mut builder = RuntimeBuilder::new().on_event(std::sync::Arc::new(report));
        if let Some(file) = &self.lock_component {
            builder = builder.lock_component(file);
        }
        if self.no_cache {
            builder = builder.no_cache();
        }
        Ok(builder.build()?)
    }

    /// The lock directory as an absolute path, checked to exist (the default one is created
    /// and checked to be private: module `lock_dir`).
    pub fn lock_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.locks {
            Some(dir) => absolute_dir(dir, "lock directory"),
            None => lock_dir::default_dir(),
        }
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
    if !meta.is_dir() {
        return Err(exit::Failure::error(
            exit::NO_INPUT,
            format!("{role} {} is not a directory", dir.display()),
        ));
    }
    std::path::absolute(dir).with_context(|| format!("{role} {}", dir.display()))
}

/// A clap value parser for durations.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    lockbydir_cli::duration::parse_ms(s).map_err(|e| e.to_string())
}
