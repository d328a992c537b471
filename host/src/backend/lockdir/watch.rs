//! Change notification for the lock component's waiters: "tell me when entry `name` of
//! directory `dir` is renamed away or removed", on Linux's inotify.
//!
//! One inotify instance per process ([`Watcher::global`]) and one thread that reads its
//! events. A [`Registration`] puts a watch on the entry itself (every entry the protocol
//! waits on is a directory: a state entry or a ticket), shared by every registration on that
//! entry (inotify gives one watch per inode), and is [`Registration::fired`] once an event of
//! that watch comes: `IN_MOVE_SELF` or `IN_DELETE_SELF` (the entry was renamed or removed),
//! `IN_ATTRIB` (its link count changed: something was renamed onto its name), the watch
//! dropped by the kernel (`IN_IGNORED`, `IN_UNMOUNT`), or the event queue overflowing (then
//! every registration fires). Watching the entry rather than its directory means that only
//! the change a sleeper waits for reaches this process: the other tickets of a long line
//! coming and going, and the renames of the lock changing hands, make no event here, so the
//! reading thread wakes once per wake-up, whatever the length of the line. The watch follows
//! the inode the path named when it was added: the caller checks the name after registering
//! (a `stat`), so that a rename just before the watch is not missed.
//!
//! When the last registration of an entry is dropped its watch is removed, so the process
//! watches at most as many entries as it has live registrations, and a lock service has at
//! most one (the sleep it is about to take); inotify's own per-user limit
//! (`fs.inotify.max_user_watches`) bounds them too, and a watch that cannot be added (the
//! entry is gone, or the limit is reached) is an error the caller falls back from.
//!
//! The instance's descriptor is made blocking once, and the reading thread blocks in `read`:
//! one system call per batch of events (the `inotify` crate's `read_events_blocking` would
//! switch `O_NONBLOCK` off and on again around each read, four `fcntl`s more). That is why
//! this uses the `inotify` crate rather than `notify`, whose inotify backend watches
//! directories and keys watches by path.
//!
//! Elsewhere than Linux there is no watcher: [`Watcher::global`] is `None` and the lock
//! component polls.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// What a registration rings when it fires: a mutex and condvar that a sleeper waits on, and
/// a notification that an async waiter awaits.
#[derive(Default)]
pub(crate) struct Bell {
    lock: Mutex<()>,
    rung: Condvar,
    rung_async: tokio::sync::Notify,
    /// How many threads wait on `rung` (changed only under `lock`): a ring with nobody
    /// asleep makes no system call (a condvar's `notify_all` always makes one).
    asleep: AtomicUsize,
    /// Rings so far.
    #[cfg_attr(not(test), allow(dead_code))]
    rings: AtomicU64,
}

impl Bell {
    /// The bell's mutex; a waiter checks its condition under it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for a ring, up to `timeout`.
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, ()>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, ()> {
        // Counted under the mutex, which the wait releases atomically: a ring that takes the
        // mutex after this sees the count.
        self.asleep.fetch_add(1, Ordering::SeqCst);
        let guard = self
            .rung
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        self.asleep.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Wake every waiter. Under the mutex, so that a waiter that has checked its condition
    /// but not started waiting yet cannot miss it.
    pub(crate) fn ring(&self) {
        self.rings.fetch_add(1, Ordering::Relaxed);
        let guard = self.lock();
        let asleep = self.asleep.load(Ordering::SeqCst) > 0;
        drop(guard);
        if asleep {
            self.rung.notify_all();
        }
        self.rung_async.notify_waiters();
    }

    /// How many times the bell was rung.
    #[cfg(test)]
    pub(crate) fn rings(&self) -> u64 {
        self.rings.load(Ordering::Relaxed)
    }

    /// A ring to await: enable it (`Notified::enable`) before checking the condition, so that
    /// a ring between the check and the await is not missed.
    pub(crate) fn rung(&self) -> tokio::sync::futures::Notified<'_> {
        self.rung_async.notified()
    }
}

/// One entry waited on.
struct Interest {
    fired: AtomicBool,
    bell: Arc<Bell>,
}

impl Interest {
    /// Fired once: the kernel's events after the first (the entry's removal, then its
    /// watch's end; or the event after [`Watcher::ring_dir`]) ring nobody.
    fn fire(&self) {
        if !self.fired.swap(true, Ordering::SeqCst) {
            self.bell.ring();
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

    use super::*;

    /// The events that end a wait (see the module documentation), on the entry itself.
    /// `ONLYDIR`: every entry waited on is a directory, never whatever else stands at its
    /// path.
    const MASK: WatchMask = WatchMask::DELETE_SELF
        .union(WatchMask::MOVE_SELF)
        .union(WatchMask::ATTRIB)
        .union(WatchMask::ONLYDIR);

    /// The process's inotify instance and who waits on what, by watch descriptor.
    pub(crate) struct Watcher {
        state: Mutex<State>,
    }

    struct State {
        watches: Watches,
        /// Each watched entry's watch and the registrations on it, by the watch's id.
        entries: HashMap<i32, (WatchDescriptor, Vec<Arc<Interest>>)>,
        /// The watches of entries in each directory (as registered), for
        /// [`Watcher::ring_dir`].
        dirs: HashMap<PathBuf, HashSet<i32>>,
        /// The reading thread stopped (the instance failed): no event will come.
        broken: bool,
        /// Events read so far.
        #[cfg_attr(not(test), allow(dead_code))]
        events: u64,
    }

    impl Watcher {
        fn state(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Start the instance and its reading thread.
        pub(crate) fn start() -> io::Result<&'static Watcher> {
            let mut inotify = Inotify::init()?;
            // Blocking from now on, for good: the reading thread is the only reader.
            {
                use std::os::fd::AsRawFd;
                let fd = inotify.as_raw_fd();
                // SAFETY: fcntl on a descriptor this instance owns, with flags only.
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
                if flags < 0
                    || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // One per process, for the process's lifetime.
            let watcher: &'static Watcher = Box::leak(Box::new(Watcher {
                state: Mutex::new(State {
                    watches: inotify.watches(),
                    entries: HashMap::new(),
                    dirs: HashMap::new(),
                    broken: false,
                    events: 0,
                }),
            }));
            std::thread::Builder::new()
                .name("lockbydir-watch".into())
                .spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    loop {
                        // The descriptor blocks: this waits for the next events.
                        match inotify.read_events(&mut buffer) {
                            Ok(events) => {
                                let mut state = watcher.state();
                                for event in events {
                                    state.dispatch(event.wd.get_watch_descriptor_id(), event.mask);
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            // The instance is broken: wake everyone; later registrations
                            // fail, and their sleepers poll.
                            Err(_) => {
                                let mut state = watcher.state();
                                state.broken = true;
                                state.fire_all();
                                return;
                            }
                        }
                    }
                })?;
            Ok(watcher)
        }

        /// Watch the entry `name` of `dir` (if not already) and fire the returned
        /// registration when it is renamed or removed. The watch is in place when this
        /// returns; an entry that is not there (or not a directory) is an error.
        pub(crate) fn register(
            &'static self,
            dir: &Path,
            name: &OsStr,
            bell: Arc<Bell>,
        ) -> io::Result<Registration> {
            let interest = Arc::new(Interest {
                fired: AtomicBool::new(false),
                bell,
            });
            let mut state = self.state();
            if state.broken {
                return Err(io::Error::other("the inotify instance failed"));
            }
            let wd = state.watches.add(dir.join(name), MASK)?;
            let id = wd.get_watch_descriptor_id();
            state
                .entries
                .entry(id)
                .or_insert_with(|| (wd, Vec::new()))
                .1
                .push(Arc::clone(&interest));
            state.dirs.entry(dir.to_owned()).or_default().insert(id);
            Ok(Registration {
                watcher: self,
                id,
                interest,
            })
        }

        /// Fire every registration on an entry of `dir` (as given to [`Watcher::register`]),
        /// now, without waiting for the kernel's events: this process has just changed the
        /// entries there (released a lock whose state entry is in `dir`), and its sleepers
        /// on them would otherwise wait for the reading thread to be scheduled. A firing is
        /// only a hint (the sleeper looks again), so one too many costs a look; the events
        /// still come, and fire whatever is registered then.
        pub(crate) fn ring_dir(&self, dir: &Path) {
            let state = self.state();
            let Some(ids) = state.dirs.get(dir) else {
                return;
            };
            ids.iter()
                .filter_map(|id| state.entries.get(id))
                .flat_map(|(_, list)| list)
                .for_each(|i| i.fire());
        }

        /// How many events the reading thread has read.
        #[cfg(test)]
        pub(crate) fn events(&self) -> u64 {
            self.state().events
        }

        /// Whether the watch `id` is in use.
        #[cfg(test)]
        pub(crate) fn is_watched(&self, id: i32) -> bool {
            self.state().entries.contains_key(&id)
        }

        pub(super) fn unregister(&self, id: i32, interest: &Arc<Interest>) {
            let mut state = self.state();
            let Some((_, list)) = state.entries.get_mut(&id) else {
                return;
            };
            list.retain(|i| !Arc::ptr_eq(i, interest));
            if list.is_empty()
                && let Some((wd, _)) = state.entries.remove(&id)
            {
                // Failing (the entry is gone, and the watch with it) is fine.
                let _ = state.watches.remove(wd);
                state.forget_dir_of(id);
            }
        }
    }

    impl State {
        fn dispatch(&mut self, id: i32, mask: EventMask) {
            self.events += 1;
            if mask.contains(EventMask::Q_OVERFLOW) {
                self.fire_all();
                return;
            }
            // Every event of an entry's watch is one the mask asked for, or the watch's end.
            if let Some((_, list)) = self.entries.get(&id) {
                list.iter().for_each(|i| i.fire());
            }
            if mask.contains(EventMask::IGNORED) {
                // The kernel dropped this watch (the entry was removed): a later registration
                // adds a new one.
                self.entries.remove(&id);
                self.forget_dir_of(id);
            }
        }

        /// Watch `id` is gone: take it out of its directory's set.
        fn forget_dir_of(&mut self, id: i32) {
            self.dirs.retain(|_, ids| {
                ids.remove(&id);
                !ids.is_empty()
            });
        }

        fn fire_all(&mut self) {
            self.entries
                .values()
                .flat_map(|(_, list)| list)
                .for_each(|i| i.fire());
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    /// No change notification on this platform (yet): the lock component polls.
    pub(crate) struct Watcher(());

    impl Watcher {
        pub(crate) fn start() -> io::Result<&'static Watcher> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no change notification on this platform",
            ))
        }

        pub(crate) fn register(
            &'static self,
            _dir: &Path,
            _name: &OsStr,
            _bell: Arc<Bell>,
        ) -> io::Result<Registration> {
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }

        pub(super) fn unregister(&self, _id: i32, _interest: &Arc<Interest>) {}

        pub(crate) fn ring_dir(&self, _dir: &Path) {}
    }
}

pub(crate) use imp::Watcher;

/// Whether changes to `dir` reach this machine's change notification: only on filesystems
/// known to be local (statfs's type). On NFS, SMB, FUSE (sshfs, virtiofs), 9p, Ceph and any
/// type not listed here, another machine's rename makes no event, so the lock component
/// must poll there.
pub(crate) fn delivers_events(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `path` is a NUL-terminated string and `stat` a plain struct the call fills.
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
            return false;
        }
        LOCAL_FILESYSTEMS.contains(&(stat.f_type as u64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}

/// statfs `f_type` of filesystems whose every change is made by this kernel (linux/magic.h):
/// ext2/3/4, tmpfs, ramfs, xfs, btrfs, bcachefs, f2fs, zfs, reiserfs, jfs, overlayfs, vfat,
/// exfat, ntfs3.
#[cfg(target_os = "linux")]
const LOCAL_FILESYSTEMS: &[u64] = &[
    0xEF53,      // ext2/3/4
    0x0102_1994, // tmpfs
    0x8584_58f6, // ramfs
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0xca45_1a4e, // bcachefs
    0xF2F5_2010, // f2fs
    0x2FC1_2FC1, // zfs
    0x5265_4973, // reiserfs
    0x3153_464a, // jfs
    0x794c_7630, // overlayfs
    0x4d44,      // vfat
    0x2011_BAB0, // exfat
    0x7366_746e, // ntfs3
];

impl Watcher {
    /// The process's watcher, started at the first call; `None` where there is none, or
    /// when the kernel refused an instance (`fs.inotify.max_user_instances`, 128 per user by
    /// default): the lock component then polls.
    pub(crate) fn global() -> Option<&'static Watcher> {
        static WATCHER: std::sync::OnceLock<Option<&'static Watcher>> = std::sync::OnceLock::new();
        *WATCHER.get_or_init(|| Watcher::start().ok())
    }
}

/// An entry waited on; dropping it stops the waiting (and the entry's watch with the
/// last registration on it).
pub(crate) struct Registration {
    watcher: &'static Watcher,
    id: i32,
    interest: Arc<Interest>,
}

impl Registration {
    /// Whether the entry has changed (or may have) since the registration.
    pub(crate) fn fired(&self) -> bool {
        self.interest.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.watcher.unregister(self.id, &self.interest);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn registrations_share_their_entry_s_watch_and_the_last_one_removes_it() {
        let dir = std::env::temp_dir().join(format!("lockbydir-share-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        let watcher = Watcher::global().unwrap();
        let bell = Arc::new(Bell::default());
        let a = watcher
            .register(&dir, "a".as_ref(), Arc::clone(&bell))
            .unwrap();
        // Another spelling of the same entry: the same watch.
        let b = watcher
            .register(&dir.join("."), "a".as_ref(), bell)
            .unwrap();
        assert_eq!(a.id, b.id);
        let id = a.id;
        drop(a);
        assert!(watcher.is_watched(id));
        drop(b);
        assert!(!watcher.is_watched(id));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_entry_that_is_not_there_cannot_be_watched() {
        let dir = std::env::temp_dir().join(format!("lockbydir-absent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bell = Arc::new(Bell::default());
        let watcher = Watcher::global().unwrap();
        assert!(
            watcher
                .register(&dir, "gone".as_ref(), Arc::clone(&bell))
                .is_err()
        );
        let missing = std::env::temp_dir().join("lockbydir-no-such-dir/x.lockdir");
        assert!(watcher.register(&missing, "a".as_ref(), bell).is_err());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn ringing_a_directory_fires_its_entries_registrations_at_once_and_no_others() {
        let dir = std::env::temp_dir().join(format!("lockbydir-ring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["x.lockdir/held", "x.queue/wait", "y.lockdir/held"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let watcher = Watcher::start().unwrap();
        let bell = Arc::new(Bell::default());
        let register = |sub: &str, name: &str| {
            watcher
                .register(&dir.join(sub), name.as_ref(), Arc::clone(&bell))
                .unwrap()
        };
        let (x, queue, y) = (
            register("x.lockdir", "held"),
            register("x.queue", "wait"),
            register("y.lockdir", "held"),
        );
        // Nothing changed on disk: only the ring can fire them, and it fires synchronously.
        watcher.ring_dir(&dir.join("x.lockdir"));
        assert!(x.fired());
        assert!(!queue.fired());
        assert!(!y.fired());
        assert_eq!(watcher.events(), 0);
        // A directory nobody watches in: nothing.
        watcher.ring_dir(&dir.join("z.lockdir"));
        assert!(!y.fired());
        drop((x, queue, y));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_registration_rings_its_bell_once_whatever_events_follow() {
        let dir = std::env::temp_dir().join(format!("lockbydir-once-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let watcher = Watcher::start().unwrap();
        // Watch `<lockdir>/held`, ring the lockdir first if `ring` (this process's release),
        // remove the entry, and wait for the kernel's two events (the removal, then the
        // watch's end, `IN_IGNORED`): the bell rang once all the same.
        let removed_after = |lockdir: &str, ring: bool| {
            let lockdir = dir.join(lockdir);
            std::fs::create_dir_all(lockdir.join("held")).unwrap();
            let bell = Arc::new(Bell::default());
            let registration = watcher
                .register(&lockdir, "held".as_ref(), Arc::clone(&bell))
                .unwrap();
            if ring {
                watcher.ring_dir(&lockdir);
                assert_eq!(bell.rings(), 1);
            }
            let events = watcher.events() + 2;
            std::fs::remove_dir(lockdir.join("held")).unwrap();
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while watcher.events() < events && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(watcher.events(), events);
            assert!(registration.fired());
            assert_eq!(bell.rings(), 1, "{}", lockdir.display());
        };
        removed_after("rung.lockdir", true);
        removed_after("removed.lockdir", false);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Wait up to a second for `registration` to fire; whether it did.
    fn fires(registration: &Registration) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !registration.fired() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        registration.fired()
    }

    #[test]
    fn only_the_entry_s_own_rename_or_removal_fires_it_not_its_neighbours() {
        let dir = std::env::temp_dir().join(format!("lockbydir-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for name in ["mine", "other", "gone"] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
        }
        // An instance of its own, whose events are this test's alone.
        let watcher = Watcher::start().unwrap();
        let bell = Arc::new(Bell::default());
        let mine = watcher
            .register(&dir, "mine".as_ref(), Arc::clone(&bell))
            .unwrap();
        let gone = watcher
            .register(&dir, "gone".as_ref(), Arc::clone(&bell))
            .unwrap();
        // Neighbours coming, going and being renamed: no event for `mine`.
        std::fs::rename(dir.join("other"), dir.join("other.2")).unwrap();
        std::fs::create_dir(dir.join("new")).unwrap();
        std::fs::remove_dir(dir.join("new")).unwrap();
        // `gone`'s removal is read by the same thread, after those events: once it fired,
        // they were all dispatched.
        std::fs::remove_dir(dir.join("gone")).unwrap();
        assert!(fires(&gone));
        assert!(!mine.fired());
        // Only `gone`'s own events were read (its removal, and the watch's end): the reading
        // thread did not wake for the neighbours.
        assert!(watcher.events() <= 2, "{} events", watcher.events());
        // Its own rename fires it.
        std::fs::rename(dir.join("mine"), dir.join("mine.2")).unwrap();
        assert!(fires(&mine));
        // So does another directory renamed onto its name, replacing it.
        std::fs::create_dir(dir.join("onto")).unwrap();
        let replaced = watcher
            .register(&dir, "mine.2".as_ref(), Arc::clone(&bell))
            .unwrap();
        std::fs::rename(dir.join("onto"), dir.join("mine.2")).unwrap();
        assert!(fires(&replaced));
        drop((mine, gone, replaced));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proc_and_missing_directories_do_not_deliver_events() {
        // /proc is no local filesystem of the list (its type is PROC_SUPER_MAGIC).
        assert!(!delivers_events(Path::new("/proc")));
        assert!(!delivers_events(Path::new("/no/such/dir")));
    }
}
