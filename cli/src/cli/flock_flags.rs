//! flock(1)'s flags that `exec` has no use for. They are parsed (and hidden from `--help`) so
//! that a flock user is told what lockbydir does instead, rather than that the flag is
//! unknown.

use clap::Args;

use super::exit::{self, Failure};

/// flock's flags without a counterpart in `exec`.
#[derive(Args, Debug)]
pub struct FlockOnlyFlags {
    #[arg(short = 's', long = "shared", hide = true)]
    shared: bool,
    #[arg(short = 'o', long = "close", hide = true)]
    close: bool,
    #[arg(short = 'u', long = "unlock", hide = true)]
    unlock: bool,
    #[arg(short = 'F', long = "no-fork", hide = true)]
    no_fork: bool,
    #[arg(long = "fcntl", hide = true)]
    fcntl: bool,
}

impl FlockOnlyFlags {
    /// Refuse (exit 64) the first of these flags given, saying what lockbydir does instead.
    pub fn refuse(&self) -> anyhow::Result<()> {
        let why = [
            (
                self.shared,
                "-s/--shared: flock's shared (read) lock has no counterpart: every lockbydir \
                 lock is exclusive, as with -x; drop -s to take it exclusively",
            ),
            (
                self.close,
                "-o/--close: flock's way of keeping the lock from what the command leaves \
                 running is what exec always does: the command inherits no descriptor, and \
                 whatever it left running in its process group is stopped before the lock is \
                 released (start a daemon that should outlive the lock with setsid); drop -o",
            ),
            (
                self.unlock,
                "-u/--unlock: flock's unlocking of a descriptor the shell holds has no \
                 counterpart: exec holds no descriptor, and releases the lock when the command \
                 exits",
            ),
            (
                self.no_fork,
                "-F/--no-fork: flock's running the command in its own place has no counterpart: \
                 lockbydir stays the command's parent, to refresh the lock while it runs and \
                 release it when it exits",
            ),
            (
                self.fcntl,
                "--fcntl: flock's choice of fcntl(2) locks has no counterpart: lockbydir's locks \
                 are directories (in the lock directory, --locks)",
            ),
        ];
        match why.into_iter().find(|(given, _)| *given) {
            Some((_, why)) => Err(Failure::error(exit::USAGE, why)),
            None => Ok(()),
        }
    }
}
