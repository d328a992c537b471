//! The lockbydir protocol: named locks made only of directory operations.
//!
//! This crate is the whole lock logic. The lock component (`guest/`) compiles it for
//! `wasm32-wasip2` with [`StdFs`] rooted at its preopened directory; natively it is unit-tested,
//! model-checked and benchmarked through the same [`Fs`] and [`Env`] traits.
//!
//! ```no_run
//! use lockbydir_protocol::{Lock, Options, Outcome, StdEnv, StdFs};
//!
//! let options = Options { timeout_ms: 10_000, holder: "me".into(), ..Options::default() };
//! let mut lock = Lock::new(StdFs::new("/tmp/locks"), StdEnv::new(), "bed", options)?;
//! if let Outcome::Acquired(grant) = lock.acquire()? {
//!     println!("sleeping with fence {}", grant.fence);
//!     lock.release()?;
//! }
//! # Ok::<(), lockbydir_protocol::Error>(())
//! ```
//!
//! Natively, [`guard`] wraps the same [`Lock`] in a small RAII API (a [`LockDir`], a
//! builder per lock, guards that release on drop):
//!
//! ```
//! # let path = std::env::temp_dir().join(format!("lockbydir-doc-lib-{}", std::process::id()));
//! let locks = lockbydir_protocol::LockDir::create(&path)?;
//! let guard = locks.lock("bed").holder("me").lock()?;
//! println!("sleeping with fence {}", guard.fence());
//! guard.release()?;
//! # std::fs::remove_dir_all(&path).unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The argument for why it is safe is written next to the code, in the files of [`lock`]
//! (`lock/transitions.rs` for the compare-and-swap steps, `lock/time.rs` for the takeover).

#![warn(missing_docs)]

pub mod entry;
pub mod env;
pub mod error;
pub mod fs;
// Native only: it uses `std::process::id` (and threads), which WASI lacks.
#[cfg(not(target_family = "wasm"))]
pub mod guard;
pub mod limits;
pub mod lock;
pub mod name;
// Native Linux only: inotify.
#[cfg(target_os = "linux")]
pub mod notify;
/// Deliberate bugs for the model checker's self-test; only with the `planted-bugs` feature.
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod prune;
pub mod recover;
pub mod repair;
pub mod waiters;

pub use entry::Holder;
pub use env::{Env, StdEnv};
pub use error::Error;
pub use fs::{Fs, FsError, FsErrorKind, StdFs};
#[cfg(not(target_family = "wasm"))]
pub use guard::keep_alive::{self, KeepAlive};
#[cfg(not(target_family = "wasm"))]
pub use guard::{Attempt, Guard, LockBuilder, LockDir, OpenError};
pub use lock::{
    Fairness, Grant, Lock, LockState, Options, Outcome, Released, Step, inspect, list_locks,
};
pub use name::{LockName, NameError};
pub use waiters::{QueueStatus, queue_status};
