//! Wake-ups for the native API on Linux: an [`Env`] whose [`Env::sleep_until_changed`] is
//! ended by inotify when the entry it waits on is renamed away or removed, so that native
//! waiters (the guard API, `exec` without a component) sleep on one name each instead of
//! polling.
//!
//! Each such sleep watches the entry itself, a directory like every entry the protocol
//! makes (`IN_MOVE_SELF | IN_DELETE_SELF`), so that only its own rename or removal wakes it,
//! not the other tickets of a long line coming and going in the same directory. The watch
//! is armed first, then the name is checked with one `stat`: an entry gone before or just
//! after the watch ends the sleep at once (a rename between the watch's path lookup and its
//! arming would otherwise be missed). The inotify descriptor is made once per environment
//! and kept: closing one waits for the kernel's SRCU grace period (about 7 ms here), which a
//! descriptor per sleep paid at every handover. Five system calls per sleep
//! (`inotify_add_watch`, `statx`, `ppoll`, `read`, `inotify_rm_watch`), whatever the length
//! of the line. One sleeper at a time: two threads sleeping on one environment may take each
//! other's events, which costs them the wake-up, never a look. A wake-up is only a hint, as
//! the trait says: any failure of inotify (too many watches, a filesystem without events)
//! makes the sleep a plain one, which is slower and never wrong.
//!
//! A host that waits for lock steps asynchronously ([`crate::Lock::acquire_step`]) can use
//! the same recipe on its event loop: one inotify descriptor kept, a watch on the step's
//! `until_changed` entry itself, then a `stat` of that name (`ENOENT` from either: step again
//! at once), and the step again on that watch's event or at the step's time. The state entry
//! is one directory renamed from state to state, so a watch left on it fires at every later
//! change too: remove each watch after its sleep.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::env::{Env, StdEnv};

/// [`StdEnv`] plus inotify wake-ups for entries of the lock directory `root`.
#[derive(Debug)]
pub struct NotifyEnv {
    inner: StdEnv,
    root: PathBuf,
    /// The inotify descriptor, made at the first sleep (`None`: inotify is not available).
    inotify: OnceLock<Option<OwnedFd>>,
}

impl NotifyEnv {
    /// Wake-ups for entries of the lock directory `root` (the root of the lock's
    /// [`crate::StdFs`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NotifyEnv {
            inner: StdEnv::new(),
            root: root.into(),
            inotify: OnceLock::new(),
        }
    }
}

impl Env for NotifyEnv {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.inner.monotonic_ms()
    }
    fn monotonic_us(&self) -> u64 {
        self.inner.monotonic_us()
    }
    fn sleep_ms(&self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn sleep_us(&self, us: u64) {
        self.inner.sleep_us(us)
    }
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
    fn wakes_on_change(&self) -> bool {
        true
    }
    fn sleep_until_changed(&self, path: &str, us: u64) {
        let end = Instant::now() + Duration::from_micros(us);
        let entry = self.root.join(path);
        let slept = match self.inotify.get_or_init(new_inotify) {
            Some(fd) => sleep_until_gone(fd, &entry, end),
            None => Err(std::io::ErrorKind::Unsupported.into()),
        };
        if slept.is_err() {
            // No wake-up to be had: sleep the rest of the time.
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
        }
    }
}

/// A new inotify descriptor, if the system gives one.
fn new_inotify() -> Option<OwnedFd> {
    // SAFETY: inotify_init1 takes flags only.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    // SAFETY: a non-negative result is a new descriptor that nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sleep until `entry` is renamed away or removed, or `end`, with a watch of its own on the
/// inotify descriptor `fd`; `Err` if inotify cannot tell.
fn sleep_until_gone(fd: &OwnedFd, entry: &Path, end: Instant) -> std::io::Result<()> {
    let path = CString::new(entry.as_os_str().as_bytes())?;
    let mask = libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_ONLYDIR;
    // SAFETY: a valid descriptor and a NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
    if wd < 0 {
        let e = std::io::Error::last_os_error();
        // Already gone (or never there): it has changed; nothing to wait for.
        return match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        };
    }
    // The watch follows the inode the path named when it was looked up: a rename between
    // that lookup and the watch would be missed (and the state entry is one inode renamed
    // from state to state, so the watch would then wait for the next change instead).
    // Armed first, then checked: a name gone by now has changed.
    let slept = match std::fs::symlink_metadata(entry) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => wait_for(fd, wd, end),
    };
    // Fails harmlessly if the entry went (its watch went with it).
    // SAFETY: a valid descriptor and a watch descriptor it returned.
    unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
    slept
}

/// Wait on `fd` for an event of watch `wd` saying its entry went, or `end`.
fn wait_for(fd: &OwnedFd, wd: i32, end: Instant) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let mut pollfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        let ready = unsafe { libc::ppoll(&mut pollfd, 1, &timeout, std::ptr::null()) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ready == 0 {
            return Ok(());
        }
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                continue;
            }
            return Err(e);
        }
        if gone(&buf[..n as usize], wd) {
            return Ok(());
        }
    }
}

/// Whether the inotify events in `events` say the entry of watch `wd` was renamed or removed,
/// or events were lost (then anything may have changed). Events of earlier sleeps' watches
/// are skipped.
fn gone(events: &[u8], wd: i32) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let went = libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_IGNORED;
    let mut at = 0;
    while at + HEADER <= events.len() {
        // SAFETY: the kernel writes whole events; the header is read unaligned from bytes
        // that are in the buffer.
        let event: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(events[at..].as_ptr().cast()) };
        if (event.wd == wd && event.mask & went != 0) || event.mask & libc::IN_Q_OVERFLOW != 0 {
            return true;
        }
        at += HEADER + event.len as usize;
    }
    false
}
