//! `lockbydir run`: run one plugin in a sandbox.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use lockbydir::limits::MAX_HANDLES_HONOURED;
use lockbydir::policy::{DEFAULT_MAX_HANDLES, DEFAULT_MAX_NEW_LOCKS};
use lockbydir::report::{Event, Reporter};
use lockbydir::{LockPolicy, NamePattern, PluginConfig, PluginLimits, PluginRunner, escape};
use lockbydir_cli::policy_file::{PolicyFile, PolicyFileError};

use super::backend::BackendArgs;
use super::exit::{self, Failure};
use super::{Global, absolute_dir, duration_ms, trap};

/// What `run --help` says about exit codes.
const EXIT_CODES: &str = "\
Exit codes:
  0    the plugin succeeded
  1    the plugin failed (WASI 0.2's exit carries only success or failure), or was stopped
       at a limit (--deadline, --max-memory; the message says which)
  64   usage: a bad flag or value, a bad policy file, a --dir that overlaps the lock
       directory (without --trust-plugin-with-locks)
  66   the lock directory, a --dir directory or the policy file does not exist or is not a
       directory
  69   the plugin or the lock component cannot be read or loaded (not a component, or it
       needs an import lockbydir does not provide), or etcd (--backend etcd) cannot be
       reached
  70   an internal error
  77   the default lock directory may not be used (owned by someone else, or writable by
       others)
  134  the plugin trapped (a panic, an `unreachable`, an out-of-bounds access), as a native
       program that aborts; its WebAssembly backtrace is printed, one frame per line

With --instances, the code is the first failed instance's (in instance order), else 0.";

/// Run a plugin: a wasi:cli/command component that may import lockbydir:lock/lock.
///
/// The plugin sees only the directories granted with --dir, the environment given with
/// --env, and its arguments. Its locks live in the lock directory, which it cannot see.
/// Its exit code becomes lockbydir's.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct RunArgs {
    /// Grant a directory: HOST, seen by the plugin at the same path, or HOST::GUEST.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Set an environment variable for the plugin.
    #[arg(long = "env", value_name = "K=V")]
    envs: Vec<String>,
    /// The plugin's name in messages and as its argv[0] [default: the file's stem].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Do not announce waits for locks on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Run N instances at once, each in its own sandbox on its own thread (each sees
    /// LOCKBYDIR_INSTANCE=0..N-1); every instance's exit status is reported.
    #[arg(long, default_value_t = 1, value_name = "N")]
    instances: usize,
    /// Read the plugin's policy from this TOML file: --allow-lock, --max-timeout,
    /// --max-locks, --max-handles, --max-new-locks, --deadline and --max-memory, as keys named
    /// like the flags (`max-memory = "256M"`). A flag given overrides the file's key;
    /// --allow-lock replaces the file's whole list [default: none].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Allow only lock names matching PATTERN (`*` matches anything; repeatable)
    /// [default: any valid lock name].
    #[arg(long = "allow-lock", value_name = "PATTERN", value_parser = NamePattern::parse)]
    allow_locks: Vec<NamePattern>,
    /// The longest lock timeout the plugin may request [default: no cap].
    #[arg(long, value_name = "DUR", value_parser = duration_ms)]
    max_timeout: Option<u64>,
    /// How many locks the plugin may hold at once [default: no cap].
    #[arg(long, value_name = "N")]
    max_locks: Option<usize>,
    /// How many lock handles the plugin may have open at once (at most 1000000)
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    max_handles: Option<usize>,
    /// How many new lockdirs (locks that did not exist yet) the plugin may create; each
    /// instance counts its own. Lockdirs are permanent (see `lockbydir prune`) [default: 64].
    #[arg(long, value_name = "N")]
    max_new_locks: Option<usize>,
    /// Allow --dir grants that are, contain or lie inside the lock directory. Such a plugin
    /// can take any lock there from its holder: only for plugins trusted with every lock.
    #[arg(long)]
    trust_plugin_with_locks: bool,
    /// Stop the plugin after this long (running code is interrupted; lock waits end 100 ms
    /// before) [default: none].
    #[arg(long, value_name = "DUR", value_parser = duration_ms)]
    deadline: Option<u64>,
    /// The most linear memory the plugin and its lock component may use together (bytes, or
    /// with K, M, G) [default: no cap].
    #[arg(long, value_name = "SIZE", value_parser = bytes)]
    max_memory: Option<usize>,
    /// Pass lockbydir's stdin on to the plugin [default: the plugin's stdin is empty].
    #[arg(long)]
    stdin: bool,
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// Arguments for the plugin (after --).
    #[arg(last = true)]
    args: Vec<String>,
    #[command(flatten)]
    backend: BackendArgs,
}

pub fn run(global: &Global, args: RunArgs) -> anyhow::Result<u8> {
    let usage = |message: String| Failure::error(exit::USAGE, message);
    if let Some(n) = args.max_handles.filter(|&n| n > MAX_HANDLES_HONOURED) {
        return Err(usage(format!(
            "--max-handles {n} is more than can be honoured (at most {MAX_HANDLES_HONOURED})"
        )));
    }
    if args.instances == 0 {
        return Err(usage("--instances must be at least 1".into()));
    }
    let file = match &args.policy {
        Some(path) => PolicyFile::load(path).map_err(policy_file_failure)?,
        None => PolicyFile::default(),
    };
    if args.stdin && args.instances > 1 {
        return Err(usage(
            "--stdin goes to one plugin: it cannot be combined with --instances".into(),
        ));
    }
    let lock_dir = global.lock_dir()?;
    let mut dirs = Vec::new();
    for grant in &args.dirs {
        let (host, guest) = grant.split_once("::").unwrap_or((grant, grant));
        if host.is_empty() || guest.is_empty() {
            return Err(usage(format!(
                "--dir {grant:?}: expected HOST or HOST::GUEST"
            )));
        }
        let host = absolute_dir(host.as_ref(), "--dir")?;
        if !args.trust_plugin_with_locks {
            lockbydir_cli::grants::check_grant(&lock_dir, &host)
                .map_err(|e| usage(e.to_string()))?;
        }
        dirs.push((host, guest.to_owned()));
    }
    let mut env = Vec::new();
    for kv in &args.envs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| usage(format!("--env {kv:?}: expected K=V")))?;
        if k.is_empty() {
            return Err(usage(format!("--env {kv:?}: the name is empty")));
        }
        env.push((k.to_owned(), v.to_owned()));
    }
    let runtime = global.runtime()?;
    let component = runtime.load_plugin(&args.plugin)?;
    args.backend.refuse_lock_dir(global)?;
    let place = args.backend.place(&lock_dir)?;
    if !args.backend.in_lock_dir() {
        // Fail at start, naming the cluster, if it is not there.
        drop(place.open(&runtime)?);
    }
    let runner = PluginRunner::new(&runtime)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.plugin
            .file_stem()
            .map_or("plugin".into(), |s| s.to_string_lossy().into_owned())
    });
    let config = PluginConfig {
        name,
        args: args.args,
        env,
        dirs,
        place,
        reporter: Some(reporter(args.quiet)),
        stdin: args.stdin,
        // Each flag given overrides the file's key; --allow-lock replaces the file's list,
        // so that the command line can narrow the names as well as widen them.
        policy: LockPolicy {
            allowed: match args.allow_locks.is_empty() {
                true => file.allow_lock.unwrap_or_default(),
                false => args.allow_locks,
            },
            max_timeout_ms: args.max_timeout.or(file.max_timeout_ms),
            max_held: args.max_locks.or(file.max_locks),
            max_handles: args
                .max_handles
                .or(file.max_handles)
                .unwrap_or(DEFAULT_MAX_HANDLES),
            max_new_locks: Some(
                args.max_new_locks
                    .or(file.max_new_locks)
                    .unwrap_or(DEFAULT_MAX_NEW_LOCKS),
            ),
        },
        limits: PluginLimits {
            deadline: args
                .deadline
                .or(file.deadline_ms)
                .map(std::time::Duration::from_millis),
            max_memory: args.max_memory.or(file.max_memory),
        },
    };
    if args.instances == 1 {
        let code = runner
            .run(&component, &config)
            .map_err(trap::plugin_failure)?;
        return Ok(exit_byte(code));
    }
    run_instances(&runner, &component, &config, args.instances)
}

/// Run `n` instances concurrently; report each; exit with the first failure's code.
fn run_instances(
    runner: &PluginRunner,
    component: &wasmtime::component::Component,
    config: &PluginConfig,
    n: usize,
) -> anyhow::Result<u8> {
    let results: Vec<Result<i32, lockbydir::Error>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..n)
            .map(|i| {
                let mut config = config.clone();
                config.name = format!("{}#{i}", config.name);
                config
                    .env
                    .push(("LOCKBYDIR_INSTANCE".into(), i.to_string()));
                s.spawn(move || runner.run(component, &config))
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("instance thread panicked"))
            .collect()
    });
    let mut first_failure = None;
    let mut failed = 0;
    for (i, result) in results.into_iter().enumerate() {
        let name = escape(&config.name);
        let code = match result {
            Ok(code) => {
                eprintln!("lockbydir: instance {i} of `{name}` exited with {code}");
                exit_byte(code)
            }
            Err(e) => {
                let e = trap::plugin_failure(e);
                super::print_error(&e, &format!("instance {i} of `{name}` failed"));
                exit::code_of(&e)
            }
        };
        if code != 0 {
            failed += 1;
            first_failure.get_or_insert(code);
        }
    }
    eprintln!(
        "lockbydir: {n} instances: {} succeeded, {failed} failed",
        n - failed
    );
    Ok(first_failure.unwrap_or(0))
}

/// What the CLI prints of the lock import's events: every one, but for waits under `quiet`
/// (refusals and locks released for a plugin are always said).
pub fn reporter(quiet: bool) -> Reporter {
    Arc::new(move |event: &Event<'_>| {
        if !quiet || !matches!(event, Event::Waiting { .. }) {
            eprintln!("lockbydir: {event}");
        }
    })
}

fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// A policy file that cannot be read exits as the file's error says (66 if it is missing or
/// a directory);
/// one that is wrong, as a wrong command line does (64).
fn policy_file_failure(e: PolicyFileError) -> anyhow::Error {
    let code = match &e {
        PolicyFileError::Read { source, .. } => match source.kind() {
            std::io::ErrorKind::IsADirectory => exit::NO_INPUT,
            kind => exit::io_code(kind),
        },
        PolicyFileError::Invalid { .. } => exit::USAGE,
    };
    Failure::error(code, e.to_string())
}

/// A clap value parser for sizes.
fn bytes(s: &str) -> Result<usize, String> {
    lockbydir_cli::size::parse_bytes(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Args;

    use super::*;

    /// The defaults the help states are the ones `run` applies.
    #[test]
    fn the_help_states_the_defaults_that_apply() {
        let command = RunArgs::augment_args(clap::Command::new("run"));
        for (id, default) in [
            ("max_handles", DEFAULT_MAX_HANDLES),
            ("max_new_locks", DEFAULT_MAX_NEW_LOCKS),
        ] {
            let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
            let help = arg.get_help().unwrap().to_string();
            assert!(
                help.ends_with(&format!("[default: {default}]")),
                "{id}: {help}"
            );
        }
    }
}
