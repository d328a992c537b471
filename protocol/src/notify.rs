//! Wake-ups for the native API on Linux: an [`Env`] whose [`Env::sleep_until_changed`] is
//! ended by inotify when the entry it waits on is renamed away or removed, so that native
//! waiters (the guard API, `exec` without a component) sleep on one name each instead of
//! polling.
//!
//! Each such sleep watches the entry's directory (`IN_MOVED_FROM | IN_DELETE`), then checks
//! that the entry is still there (a change before the watch would otherwise be missed), then
//! waits for an event naming it, or the sleep's time. About six system calls per sleep
//! (`inotify_init1`, `inotify_add_watch`, `statx`, `ppoll`, `read`, `close`), whatever the
//! length of the line. A wake-up is only a hint, as the trait says: any failure of inotify
//! (too many watches, a filesystem without events) makes the sleep a plain one, which is
//! slower and never wrong.
//!
//! A host that waits for lock steps asynchronously ([`crate::Lock::acquire_step`]) can use
//! the same recipe on its event loop: one inotify descriptor, a watch on the directory of the
//! step's `until_changed`, the existence check after arming, and the step again on an event
//! naming that entry or at the step's time.

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
    let (Some(dir), Some(name)) = (entry.parent(), entry.file_name()) else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: inotify_init1 takes flags only; a non-negative result is a new descriptor that
    // we own.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let dir = CString::new(dir.as_os_str().as_bytes())?;
    let mask = libc::IN_MOVED_FROM | libc::IN_DELETE | libc::IN_DELETE_SELF | libc::IN_ONLYDIR;
    // SAFETY: a valid descriptor and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), dir.as_ptr(), mask) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Armed: an entry already gone has changed; nothing to wait for.
    if std::fs::symlink_metadata(entry).is_err() {
        return Ok(());
    }
    let mut buf = [0u8; 4096];
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
        if names_entry(&buf[..n as usize], name.as_bytes()) {
            return Ok(());
        }
    }
}

/// Whether the inotify events in `events` include one for `name`, or the loss of the watch
/// itself (the directory went, or the event queue overflowed: then anything may have
/// changed).
fn names_entry(events: &[u8], name: &[u8]) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut at = 0;
    while at + HEADER <= events.len() {
        // SAFETY: the kernel writes whole events; the header is read unaligned from bytes
        // that are in the buffer.
        let event: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(events[at..].as_ptr().cast()) };
        let len = event.len as usize;
        let raw = events.get(at + HEADER..at + HEADER + len).unwrap_or(&[]);
        let this = raw.split(|&b| b == 0).next().unwrap_or(&[]);
        if this == name
            || event.mask & (libc::IN_DELETE_SELF | libc::IN_IGNORED | libc::IN_Q_OVERFLOW) != 0
        {
            return true;
        }
        at += HEADER + len;
    }
    false
}
