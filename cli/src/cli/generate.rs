//! `lockbydir completions SHELL` and `lockbydir man`: shell completions and man pages
//! generated from the clap definitions, so they always list the real subcommands and options.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clap_complete::Shell;

/// Print a completion script for SHELL to standard output.
///
/// bash: `lockbydir completions bash > ~/.local/share/bash-completion/completions/lockbydir`;
/// zsh: into a directory on $fpath as `_lockbydir`; fish: `~/.config/fish/completions/lockbydir.fish`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// Print the man page lockbydir(1) to standard output, or write it and one page per
/// subcommand (lockbydir-run(1), ...) into a directory.
///
/// `lockbydir man | man -l -` reads it; `lockbydir man --out ~/.local/share/man/man1` installs
/// them all for `man lockbydir-exec`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write lockbydir.1 and lockbydir-SUBCOMMAND.1 into DIR (an existing directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut cmd = super::command();
    clap_complete::generate(args.shell, &mut cmd, "lockbydir", &mut std::io::stdout());
    Ok(0)
}

pub fn man(args: ManArgs) -> anyhow::Result<u8> {
    // As `generate_to` does: `help` gets no page, so lockbydir(1) does not list it. The
    // VERSION section gets `-V`'s one line: roff would run `--version`'s lines together.
    let cmd = super::command()
        .disable_help_subcommand(true)
        .long_version(None::<&'static str>);
    match &args.out {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout().lock())
            .context("write the man page to standard output")?,
        Some(dir) => {
            let dir = super::absolute_dir(dir, "man page directory")?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("write the man pages into {}", dir.display()))?;
            eprintln!(
                "lockbydir: wrote lockbydir.1 and a page per subcommand into {}",
                dir.display()
            );
        }
    }
    Ok(0)
}
