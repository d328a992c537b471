//! `lockbydir`: run sandboxed plugins and commands that take turns through directory locks.
//!
//! The command line (crate `lockbydir-cli`, in `cli/`): subcommands, `bench`, completions and
//! man pages. Everything it runs is the host library, crate `lockbydir` (`host/`), which an
//! embedder uses without any of this.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // An error can quote a holder label or a path from the lock directory: escape it all.
            eprintln!("lockbydir: error: {}", lockbydir::escape(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
