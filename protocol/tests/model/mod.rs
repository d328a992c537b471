//! A model checker for the lock protocol: the real [`lockbydir_protocol::Lock`] code, run by
//! several actors against an in-memory filesystem and virtual clocks, under a deterministic
//! scheduler that explores the interleavings of their filesystem and clock operations.
//!
//! - [`world`]: the in-memory filesystem (POSIX directory semantics).
//! - [`op`]: the scheduling points.
//! - [`engine`]: the scheduler: one OS thread per actor, one runs at a time, every `Fs`/`Env`
//!   call is a scheduling point; virtual time, pauses, crashes, retried-RPC faults.
//! - [`handles`]: `Fs` and `Env` implementations that call into the engine.
//! - [`actor`]: what each actor does with its lock.
//! - [`checker`]: the invariants.
//! - [`scenario`]: actors, clocks, budgets.
//! - [`strategy`], [`dfs`], [`explore`]: how schedules are chosen, searched and reported.

pub mod actor;
pub mod checker;
pub mod dfs;
pub mod engine;
pub mod explore;
pub mod handles;
pub mod op;
pub mod rng;
pub mod scenario;
pub mod stats;
pub mod strategy;
pub mod trace;
pub mod world;
