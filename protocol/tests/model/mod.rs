//! A model checker for the lock protocol: the real [`lockbydir_protocol::Lock`] code, run by
//! several actors against an in-memory filesystem and virtual clocks, under a deterministic
//! scheduler that explores the interleavings of their filesystem and clock operations.
//!
//! - [`world`]: the in-memory filesystem (POSIX directory semantics).
//! - [`op`]: the scheduling points.
//! - [`engine`], [`state`]: the scheduler: one OS thread per actor, one runs at a time, every
//!   `Fs`/`Env` call is a scheduling point.
//! - [`options`]: what may happen at each scheduling point: another actor runs, time passes,
//!   an actor is paused or crashed, a fault is injected.
//! - [`handles`]: `Fs` and `Env` implementations that call into the engine.
//! - [`actor`]: what each actor does with its lock.
//! - [`checker`]: the invariants.
//! - [`scenario`]: actors, clocks, budgets.
//! - [`strategy`], [`dfs`], [`explore`]: how schedules are chosen, searched and reported.
//! - [`trace`], [`stats`], [`rng`]: what a schedule did, counters, deterministic randomness.
//!
//! A schedule is a sequence of decisions; each picks one of the options [`options`] lists,
//! the first being the default. Replaying the same decisions with the same seed replays the
//! same schedule, step for step: nothing depends on the OS scheduler, wall-clock time or hash
//! order.

pub mod actor;
pub mod checker;
pub mod dfs;
pub mod engine;
pub mod explore;
pub mod handles;
pub mod op;
pub mod options;
pub mod rng;
pub mod scenario;
pub mod state;
pub mod stats;
pub mod strategy;
pub mod trace;
pub mod world;
