//! `lockbydir run`: run one plugin in a sandbox.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lockbydir::{PluginConfig, PluginRunner};

use super::{Global, absolute_dir};

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
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// Arguments for the plugin (after --).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(global: &Global, args: RunArgs) -> anyhow::Result<u8> {
    let lock_dir = global.lock_dir()?;
    let mut dirs = Vec::new();
    for grant in &args.dirs {
        let (host, guest) = grant.split_once("::").unwrap_or((grant, grant));
        anyhow::ensure!(
            !host.is_empty() && !guest.is_empty(),
            "--dir {grant:?}: expected HOST or HOST::GUEST"
        );
        dirs.push((absolute_dir(host.as_ref(), "--dir")?, guest.to_owned()));
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
    let config = PluginConfig {
        name,
        args: args.args,
        env,
        dirs,
        lock_dir,
        quiet: args.quiet,
    };
    let code = runner.run(&component, &config)?;
    Ok(u8::try_from(code).unwrap_or(1))
}
