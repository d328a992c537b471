//! `lockbydir`: run sandboxed plugins and commands that take turns through directory locks.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lockbydir: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
