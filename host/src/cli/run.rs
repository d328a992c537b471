//! `lockbydir run`: run one plugin in a sandbox.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lockbydir::limits::MAX_HANDLES_HONOURED;
use lockbydir::{LockPolicy, NamePattern, PluginConfig, PluginLimits, PluginRunner};

use super::{Global, absolute_dir, duration_ms};

/// Run a plugin: a wasi:cli/command component that may import lockbydir:lock/lock.
///
/// The plugin sees only the directories granted with --dir, the environment given with
/// --env, and its arguments. Its locks live in the lock directory, which it cannot see.
/// Its exit code becomes lockbydir's.
#[derive(Args, Debug)]
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
    /// How many lock handles the plugin may have open at once (at most 1000000).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_handles: usize,
    /// How many new lockdirs (locks that did not exist yet) the plugin may create; each
    /// instance counts its own. Lockdirs are permanent (see `lockbydir prune`).
    #[arg(long, value_name = "N", default_value_t = lockbydir::policy::DEFAULT_MAX_NEW_LOCKS)]
    max_new_locks: usize,
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
}

pub fn run(global: &Global, args: RunArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.max_handles <= MAX_HANDLES_HONOURED,
        "--max-handles {} is more than can be honoured (at most {MAX_HANDLES_HONOURED})",
        args.max_handles
    );
    anyhow::ensure!(
        !(args.stdin && args.instances > 1),
        "--stdin goes to one plugin: it cannot be combined with --instances"
    );
    let lock_dir = global.lock_dir()?;
    let mut dirs = Vec::new();
    for grant in &args.dirs {
        let (host, guest) = grant.split_once("::").unwrap_or((grant, grant));
        anyhow::ensure!(
            !host.is_empty() && !guest.is_empty(),
            "--dir {grant:?}: expected HOST or HOST::GUEST"
        );
        let host = absolute_dir(host.as_ref(), "--dir")?;
        if !args.trust_plugin_with_locks {
            lockbydir::grants::check_grant(&lock_dir, &host)?;
        }
        dirs.push((host, guest.to_owned()));
    }
    let mut env = Vec::new();
    for kv in &args.envs {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected K=V"))?;
        anyhow::ensure!(!k.is_empty(), "--env {kv:?}: the name is empty");
        env.push((k.to_owned(), v.to_owned()));
    }
    let runtime = global.runtime()?;
    let component = runtime.load_plugin(&args.plugin)?;
    let runner = PluginRunner::new(&runtime)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.plugin
            .file_stem()
            .map_or("plugin".into(), |s| s.to_string_lossy().into_owned())
    });
    anyhow::ensure!(args.instances >= 1, "--instances must be at least 1");
    let config = PluginConfig {
        name,
        args: args.args,
        env,
        dirs,
        lock_dir,
        quiet: args.quiet,
        stdin: args.stdin,
        policy: LockPolicy {
            allowed: args.allow_locks,
            max_timeout_ms: args.max_timeout,
            max_held: args.max_locks,
            max_handles: args.max_handles,
            max_new_locks: Some(args.max_new_locks),
        },
        limits: PluginLimits {
            deadline: args.deadline.map(std::time::Duration::from_millis),
            max_memory: args.max_memory,
        },
    };
    if args.instances == 1 {
        let code = runner.run(&component, &config)?;
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
    for (i, result) in results.iter().enumerate() {
        let code = match result {
            Ok(code) => {
                eprintln!(
                    "lockbydir: instance {i} of `{}` exited with {code}",
                    config.name
                );
                exit_byte(*code)
            }
            Err(e) => {
                eprintln!("lockbydir: instance {i} of `{}` failed: {e}", config.name);
                1
            }
        };
        if code != 0 && first_failure.is_none() {
            first_failure = Some(code);
        }
    }
    let failed = results.iter().filter(|r| !matches!(r, Ok(0))).count();
    eprintln!(
        "lockbydir: {n} instances: {} succeeded, {failed} failed",
        n - failed
    );
    Ok(first_failure.unwrap_or(0))
}

fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// A clap value parser for sizes.
fn bytes(s: &str) -> Result<usize, String> {
    lockbydir::size::parse_bytes(s).map_err(|e| e.to_string())
}
