//! Wake-ups for the native API on Linux: an [`Env`] whose [`Env::sleep_until_changed`] is
//! ended by inotify when the entry it waits on is renamed away or removed, so that native
//! waiters (the guard API, `exec` without a component) sleep on one name each instead of
//! polling.
//!
//! Each such sleep watches the entry itself, a directory like every entry the protocol
//! makes (`IN_MOVE_SELF | IN_DELETE_SELF`), so that only its own rename or removal wakes it,
//! not the other tickets of a long line coming and going in the same directory; an entry
//! already gone fails the watch, which ends the sleep at once. Five system calls per sleep
//! (`inotify_init1`, `inotify_add_watch`, `ppoll`, `read`, `close`), whatever the length of
//! the line. A wake-up is only a hint, as the trait says: any failure of inotify
//! (too many watches, a filesystem without events) makes the sleep a plain one, which is
//! slower and never wrong.
//!
//! A host that waits for lock steps asynchronously ([`crate::Lock::acquire_step`]) can use
//! the same recipe on its event loop: one inotify descriptor, a watch on the step's
//! `until_changed` entry itself (`ENOENT`: step again at once), and the step again on that
//! watch's event or at the step's time.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::env::{Env, StdEnv};

/// [`StdEnv`] plus inotify wake-ups for entries of the lock directory `root`.
#[derive(Debug)]
pub struct NotifyEnv {
    inner: StdEnv,
    root: PathBuf,
}

impl NotifyEnv {
    /// Wake-ups for entries of the lock directory `root` (the root of the lock's
    /// [`crate::StdFs`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NotifyEnv {
            inner: StdEnv::new(),
            root: root.into(),
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
        match sleep_until_gone(&entry, end) {
            Ok(()) => {}
            // No wake-up to be had: sleep the rest of the time.
            Err(_) => std::thread::sleep(end.saturating_duration_since(Instant::now())),
        }
    }
}

/// Sleep until `entry` is renamed away or removed, or `end`; `Err` if inotify cannot tell.
fn sleep_until_gone(entry: &Path, end: Instant) -> std::io::Result<()> {
    // SAFETY: inotify_init1 takes flags only; a non-negative result is a new descriptor that
    // we own.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = CString::new(entry.as_os_str().as_bytes())?;
    let mask = libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_ONLYDIR;
    // SAFETY: a valid descriptor and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        let e = std::io::Error::last_os_error();
        // Already gone (or never there): it has changed; nothing to wait for.
        return match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        };
    }
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
        if gone(&buf[..n as usize]) {
            return Ok(());
        }
    }
}

/// Whether the inotify events in `events` say the watched entry was renamed or removed, or
/// the watch was lost (then anything may have changed).
fn gone(events: &[u8]) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut at = 0;
    while at + HEADER <= events.len() {
        // SAFETY: the kernel writes whole events; the header is read unaligned from bytes
        // that are in the buffer.
        let event: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(events[at..].as_ptr().cast()) };
        let lost =
            libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_IGNORED | libc::IN_Q_OVERFLOW;
        if event.mask & lost != 0 {
            return true;
        }
        at += HEADER + event.len as usize;
    }
    false
}
