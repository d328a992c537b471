//! The helpers of the `lockbydir` command line that the tests use too: composing a plugin with
//! the lock component, parsing durations, sizes and policy files, the holder label `exec`
//! writes, the directories granted to plugins, and reading hold logs. The command line itself is `main.rs` and `cli/`.

pub mod compose;
pub mod duration;
pub mod grants;
pub mod holder_label;
pub mod intervals;
pub mod policy_file;
pub mod size;
