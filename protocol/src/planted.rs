//! Deliberate protocol bugs, compiled only with the `planted-bugs` feature, so that the model
//! checker can show it catches them. Each is off until a thread switches it on, and only
//! affects lock calls made on that thread.

use std::cell::Cell;

use crate::entry::Entry;
use crate::error::Error;
use crate::fs::{Fs, FsErrorKind};

/// A deliberate bug in [`crate::Lock`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlantedBug {
    /// The real protocol.
    #[default]
    None,
    /// Take over an expired lock by removing its entry and then creating a new one, instead
    /// of one atomic rename of the entry.
    TakeoverByRemoveThenCreate,
    /// Release by renaming whatever entry is current to `free`, without checking it is still
    /// this handle's own.
    ReleaseWithoutOwnershipCheck,
    /// Rule (b) of the takeover without the margin for the filesystem clock's lag and
    /// granularity: `fs_now - mtime > timeout`, as it was.
    NoFilesystemClockMargin,
}

thread_local! {
    static PLANTED: Cell<PlantedBug> = const { Cell::new(PlantedBug::None) };
}

/// Make every lock call on this thread from now on behave with `bug`.
pub fn plant(bug: PlantedBug) {
    PLANTED.with(|p| p.set(bug));
}

/// The bug planted on this thread.
pub fn planted() -> PlantedBug {
    PLANTED.with(Cell::get)
}

/// Bug (a): with [`PlantedBug::TakeoverByRemoveThenCreate`] planted and this acquisition a
/// takeover, replace `from` by `to` with remove + create. `None` when not planted. Same
/// contract as the real swap: `Err(NotHeld)` if `from` is gone.
pub(crate) fn take_over_by_remove(
    fs: &impl Fs,
    lockdir: &str,
    from: &Entry,
    to: &Entry,
    takeover: bool,
) -> Option<Result<(), Error>> {
    if !takeover || planted() != PlantedBug::TakeoverByRemoveThenCreate {
        return None;
    }
    let old = format!("{lockdir}/{}", from.encode());
    let new = format!("{lockdir}/{}", to.encode());
    Some(match fs.remove_dir(&old) {
        Err(e) if e.kind == FsErrorKind::NotFound => Err(Error::NotHeld),
        Err(source) => Err(Error::Io {
            operation: "remove-dir",
            path: old,
            source,
        }),
        Ok(()) => fs.create_dir(&new).map_err(|source| Error::Io {
            operation: "create-dir",
            path: new,
            source,
        }),
    })
}

/// Bug (b): with [`PlantedBug::ReleaseWithoutOwnershipCheck`] planted, the entry a release
/// renames is whatever is current (read with `current`), not the handle's `own`.
pub(crate) fn release_from(
    own: Entry,
    current: impl FnOnce() -> Result<Option<Entry>, Error>,
) -> Result<Entry, Error> {
    if planted() != PlantedBug::ReleaseWithoutOwnershipCheck {
        return Ok(own);
    }
    Ok(current()?.unwrap_or(own))
}

/// Bug (c): with [`PlantedBug::NoFilesystemClockMargin`] planted, rule (b) adds no margin to
/// the holder's timeout; otherwise `margin` as computed.
pub(crate) fn clock_margin(margin: u64) -> u64 {
    match planted() {
        PlantedBug::NoFilesystemClockMargin => 0,
        _ => margin,
    }
}
