//! The lock component's `wasi:filesystem/types.[method]descriptor.read-directory`, without a
//! `stat` per entry.
//!
//! wasmtime-wasi's own `read-directory` stats every entry it lists (to report its type), so
//! a listing of a lock's queue costs one system call per waiter, and every newcomer to a line
//! lists the queue to find its place: each acquisition would cost in proportion to the length
//! of the line. The protocol only reads names. This listing takes each entry's type from the
//! directory itself (`d_type` of `getdents64`), so a listing costs the same few system calls
//! (open `.` relative to the descriptor, read the entries, close) however many entries it
//! has; an entry whose type the filesystem does not report is listed as `unknown`, as the
//! interface allows, rather than stat'ed.
//!
//! It replaces the `directory-entry-stream` resource too (wasmtime-wasi's cannot be made
//! outside it); only the lock component's linker gets this, never a plugin's. Errors are
//! wasmtime-wasi's mapping of the real errno, as with its own listing.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::FsError;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    self as fs, Descriptor, DescriptorType, DirectoryEntry, ErrorCode,
};

/// The interface's name as wasmtime-wasi defines it (the linker resolves every compatible
/// 0.2.x import of the lock component to it, as for `stat-at`).
const INTERFACE: &str = "wasi:filesystem/types@0.2.12";

/// A listing being read by the guest: the names read at `read-directory`, in the
/// directory's order.
pub(crate) struct Listing(std::vec::IntoIter<DirectoryEntry>);

/// Replace `read-directory` and the stream it returns in `linker` (after
/// `wasmtime_wasi::p2::add_to_linker_sync`); `count` is told of every listing made.
pub(crate) fn shadow_read_directory<T: WasiView + 'static>(
    linker: &mut Linker<T>,
    count: fn(&mut T),
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = linker.instance(INTERFACE).and_then(|mut instance| {
        instance.resource(
            "directory-entry-stream",
            ResourceType::host::<Listing>(),
            |mut store, rep| {
                store
                    .data_mut()
                    .ctx()
                    .table
                    .delete(Resource::<Listing>::new_own(rep))?;
                Ok(())
            },
        )?;
        instance.func_wrap(
            "[method]descriptor.read-directory",
            move |mut store: StoreContextMut<'_, T>,
                  (fd,): (Resource<Descriptor>,)|
                  -> wasmtime::Result<(Result<Resource<Listing>, ErrorCode>,)> {
                let data = store.data_mut();
                count(data);
                let listed = match data.ctx().table.get(&fd)? {
                    wasmtime_wasi::filesystem::Descriptor::Dir(dir) => {
                        list(&dir.dir).map_err(FsError::from)
                    }
                    // As wasmtime-wasi answers for a file.
                    wasmtime_wasi::filesystem::Descriptor::File(_) => {
                        return Ok((Err(ErrorCode::NotDirectory),));
                    }
                };
                let entries = match listed {
                    Ok(entries) => entries,
                    // As the generated bindings do: an error code is the guest's, anything
                    // else traps.
                    Err(e) => {
                        let code = fs::Host::convert_error_code(&mut data.filesystem(), e)?;
                        return Ok((Err(code),));
                    }
                };
                let stream = data.ctx().table.push(Listing(entries.into_iter()))?;
                Ok((Ok(stream),))
            },
        )?;
        instance.func_wrap(
            "[method]directory-entry-stream.read-directory-entry",
            |mut store: StoreContextMut<'_, T>,
             (stream,): (Resource<Listing>,)|
             -> wasmtime::Result<(Result<Option<DirectoryEntry>, ErrorCode>,)> {
                let listing = store.data_mut().ctx().table.get_mut(&stream)?;
                Ok((Ok(listing.0.next()),))
            },
        )
    });
    linker.allow_shadowing(false);
    added
}

/// The entries of the directory open as `dir` (without `.` and `..`), each with the type the
/// directory reports for it, from the beginning whatever was read through `dir` before.
pub(crate) fn list(dir: &std::fs::File) -> std::io::Result<Vec<DirectoryEntry>> {
    let mut entries = Vec::new();
    let mut add = |name: &[u8], ty| {
        if name == b"." || name == b".." {
            return Ok(());
        }
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EILSEQ))?;
        entries.push(DirectoryEntry {
            type_: descriptor_type(ty),
            name,
        });
        Ok(())
    };
    // Nothing else reads entries through the lock component's descriptors (wasmtime-wasi's
    // own listing, replaced here, opens `.` anew each time): rewinding the descriptor itself
    // costs one system call, where opening `.` and closing it cost two. A descriptor that
    // cannot be rewound gets a description of its own.
    #[cfg(target_os = "linux")]
    if rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0)).is_ok() {
        each_entry(dir, &mut add)?;
        return Ok(entries);
    }
    use rustix::fs::{Mode, OFlags, openat};
    let fd = openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    each_entry(fd, &mut add)?;
    Ok(entries)
}

/// How many bytes of entries one `getdents64` may return: about 450 queue tickets, so that a
/// line of up to that many waiters is listed in one call (and one more that finds the end).
/// rustix's `Dir` starts at 768 bytes and grows by as much per call, so a listing of 32
/// tickets took four calls and one of 200 took seven.
#[cfg(target_os = "linux")]
const LISTING_BUFFER: usize = 32 * 1024;

/// Call `each` with the name and type of every entry of the directory open as `fd`, from its
/// current position; a directory removed meanwhile has no more entries.
#[cfg(target_os = "linux")]
fn each_entry(
    fd: impl rustix::fd::AsFd,
    mut each: impl FnMut(&[u8], rustix::fs::FileType) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buffer = Vec::<u8>::with_capacity(LISTING_BUFFER);
    let mut dir = rustix::fs::RawDir::new(&fd, buffer.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        match entry {
            Ok(entry) => each(entry.file_name().to_bytes(), entry.file_type())?,
            // As rustix's `Dir` (and wasmtime-wasi's listing) take it: removed, so empty.
            Err(rustix::io::Errno::NOENT) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Elsewhere, rustix's `Dir`.
#[cfg(not(target_os = "linux"))]
fn each_entry(
    fd: rustix::fd::OwnedFd,
    mut each: impl FnMut(&[u8], rustix::fs::FileType) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for entry in rustix::fs::Dir::new(fd)? {
        let entry = entry?;
        each(entry.file_name().to_bytes(), entry.file_type())?;
    }
    Ok(())
}

/// The WASI type of a directory entry of type `ty`, as wasmtime-wasi maps a stat's.
fn descriptor_type(ty: rustix::fs::FileType) -> DescriptorType {
    use rustix::fs::FileType as T;
    match ty {
        T::Directory => DescriptorType::Directory,
        T::RegularFile => DescriptorType::RegularFile,
        T::Symlink => DescriptorType::SymbolicLink,
        T::Fifo => DescriptorType::Fifo,
        T::Socket => DescriptorType::Socket,
        T::CharacterDevice => DescriptorType::CharacterDevice,
        T::BlockDevice => DescriptorType::BlockDevice,
        _ => DescriptorType::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(tag: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("lockbydir-listing-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    #[test]
    fn lists_every_name_with_its_type_from_the_start_each_time() {
        let dir = scratch("names");
        // Tickets' names, more than one read of the directory holds (600 of about 72 bytes).
        for i in 0..600u64 {
            let ticket = format!(
                "wait.{}.{i:016x}.{}",
                1_796_694_151_942_u64 + i,
                1_796_694_153_339_u64
            );
            std::fs::create_dir(dir.0.join(ticket)).unwrap();
        }
        std::fs::write(dir.0.join("notes.txt"), "").unwrap();
        let open = std::fs::File::open(&dir.0).unwrap();
        for _ in 0..2 {
            let mut listed: Vec<(String, DescriptorType)> = list(&open)
                .unwrap()
                .into_iter()
                .map(|e| (e.name, e.type_))
                .collect();
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            let mut expected: Vec<(String, DescriptorType)> = std::fs::read_dir(&dir.0)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let ty = match e.file_type().unwrap().is_dir() {
                        true => DescriptorType::Directory,
                        false => DescriptorType::RegularFile,
                    };
                    (e.file_name().into_string().unwrap(), ty)
                })
                .collect();
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(listed.len(), 601);
            assert_eq!(listed, expected);
        }
    }

    #[test]
    fn the_lock_component_lists_a_queue_through_the_shadowing_read_directory() {
        use crate::backend::{Backend, LockDirBackend};
        use crate::runtime::RuntimeBuilder;
        let dir = scratch("component");
        // 40 live tickets, as 40 waiters would leave them.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        for i in 0..40u64 {
            let ticket = format!("wait.{}.{:016x}.{}", now - 100 + i, i + 1, now + 60_000);
            std::fs::create_dir_all(dir.0.join("bed.queue").join(ticket)).unwrap();
        }
        let runtime = RuntimeBuilder::new().build().unwrap();
        let mut backend = LockDirBackend::new(&runtime, &dir.0).unwrap();
        let before = backend.listings();
        let queue = backend.queue("bed").unwrap();
        assert_eq!(queue.live, 40, "{queue:?}");
        assert!(backend.listings() > before);
    }

    #[test]
    fn a_removed_directory_lists_empty_and_a_file_is_not_a_directory() {
        let dir = scratch("removed");
        let gone = dir.0.join("gone");
        std::fs::create_dir(&gone).unwrap();
        let open = std::fs::File::open(&gone).unwrap();
        std::fs::remove_dir(&gone).unwrap();
        assert_eq!(list(&open).unwrap().len(), 0);
        std::fs::write(dir.0.join("file"), "").unwrap();
        let file = std::fs::File::open(dir.0.join("file")).unwrap();
        let err = list(&file).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    }
}
