//! Who contends, and how it is run: lockbydir (with the host's wake-ups, and in its polling
//! fallback), the protocol natively, and the peers lockbydir is measured against: the
//! kernel's flock and the seed's naive mkdir/rmdir lock.

use serde::{Serialize, Serializer};

use super::worker::NativeLock;

/// What contends, and how it is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Bench plugin instances on threads of this host, each with its own lock component; the
    /// host offers wake-ups (its default).
    PluginThreads,
    /// The same with `LOCKBYDIR_NO_WAKEUPS=1` when their lock services are made: the polling
    /// fallback every host without the wake-up capability gets (jco, wasmtime-py).
    PluginThreadsPolling,
    /// Bench plugins in separate `lockbydir run` processes (wake-ups offered).
    PluginProcs,
    /// The same, each process started with `LOCKBYDIR_NO_WAKEUPS=1`.
    PluginProcsPolling,
    /// The protocol compiled natively, on threads (no WebAssembly at all).
    ProtocolThreads,
    /// The protocol natively in separate processes (`bench worker`), first come first
    /// served: what the guard API gives Rust users, in each fairness mode.
    ProtocolProcsFifo,
    /// The same with bounded fairness.
    ProtocolProcsBounded,
    /// Kernel flock on threads, each with its own open file.
    FlockThreads,
    /// Kernel flock in separate processes.
    FlockProcs,
    /// The seed's algorithm in separate processes: `mkdir` to take, `rmdir` to let go, a
    /// waiter tries `mkdir` again every 5 ms.
    Seed5Procs,
    /// The same, trying every 30 ms (the seed's default).
    Seed30Procs,
    /// Bench plugins in separate `lockbydir run --backend etcd` processes: the same plugin,
    /// its locks in etcd (measured in the etcd section only).
    EtcdPluginProcs,
}

impl Kind {
    /// The kinds measured for every contender count (the peers are measured at the count
    /// the targets name, see [`Kind::peers`]).
    pub fn core(processes: bool) -> Vec<Kind> {
        use Kind::*;
        let all = [
            PluginThreads,
            PluginProcs,
            ProtocolThreads,
            ProtocolProcsFifo,
            ProtocolProcsBounded,
            FlockThreads,
            FlockProcs,
        ];
        all.into_iter()
            .filter(|k| processes || !k.is_process())
            .collect()
    }

    /// Every kind: the core ones, lockbydir's polling fallback, and the seed-like peers.
    pub fn peers(processes: bool) -> Vec<Kind> {
        use Kind::*;
        let all = [
            PluginThreads,
            PluginThreadsPolling,
            PluginProcs,
            PluginProcsPolling,
            ProtocolThreads,
            ProtocolProcsFifo,
            ProtocolProcsBounded,
            FlockThreads,
            FlockProcs,
            Seed5Procs,
            Seed30Procs,
        ];
        all.into_iter()
            .filter(|k| processes || !k.is_process())
            .collect()
    }

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PluginThreads => "plugin-threads",
            Kind::PluginThreadsPolling => "plugin-threads-polling",
            Kind::PluginProcs => "plugin-procs",
            Kind::PluginProcsPolling => "plugin-procs-polling",
            Kind::ProtocolThreads => "protocol-threads",
            Kind::ProtocolProcsFifo => "protocol-procs-fifo",
            Kind::ProtocolProcsBounded => "protocol-procs-bounded",
            Kind::FlockThreads => "flock-threads",
            Kind::FlockProcs => "flock-procs",
            Kind::Seed5Procs => "seed-5ms-procs",
            Kind::Seed30Procs => "seed-30ms-procs",
            Kind::EtcdPluginProcs => "etcd-plugin-procs",
        }
    }

    /// Whether the contenders are separate processes.
    pub fn is_process(self) -> bool {
        matches!(
            self,
            Kind::PluginProcs
                | Kind::PluginProcsPolling
                | Kind::FlockProcs
                | Kind::ProtocolProcsFifo
                | Kind::ProtocolProcsBounded
                | Kind::Seed5Procs
                | Kind::Seed30Procs
                | Kind::EtcdPluginProcs
        )
    }

    /// The native lock that interoperates with this kind's lock (the one the benchmark holds
    /// itself while they wait).
    pub fn native_lock(self) -> NativeLock {
        match self {
            Kind::FlockThreads | Kind::FlockProcs => NativeLock::Flock,
            Kind::Seed5Procs | Kind::Seed30Procs => NativeLock::Seed,
            Kind::ProtocolProcsFifo => NativeLock::ProtocolFifo,
            Kind::ProtocolProcsBounded => NativeLock::ProtocolBounded,
            _ => NativeLock::Protocol,
        }
    }

    /// How often a seed-like waiter tries again (ms; 0 for the other kinds).
    pub fn seed_poll_ms(self) -> u64 {
        match self {
            Kind::Seed5Procs => 5,
            Kind::Seed30Procs => 30,
            _ => 0,
        }
    }

    /// Whether the contenders are bench plugins (lockbydir as users run it).
    pub fn is_plugin(self) -> bool {
        matches!(
            self,
            Kind::PluginThreads
                | Kind::PluginThreadsPolling
                | Kind::PluginProcs
                | Kind::PluginProcsPolling
                | Kind::EtcdPluginProcs
        )
    }

    /// Whether lockbydir runs without the host's wake-ups (`LOCKBYDIR_NO_WAKEUPS=1`).
    pub fn polling(self) -> bool {
        matches!(self, Kind::PluginThreadsPolling | Kind::PluginProcsPolling)
    }
}

/// In JSON as in the tables: [`Kind::name`].
impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
