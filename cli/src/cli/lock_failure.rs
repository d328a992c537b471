//! A failed lock operation as `exec` reports it, naming the errno the lock component could
//! not.
//!
//! The lock component learns why a filesystem call failed from WASI's error code, which the
//! host's WASI implementation (wasmtime-wasi 48) derives from the errno. Its table has no
//! entry for EROFS (nor for EDQUOT, EXDEV, ETXTBSY, EAGAIN and others), and an errno without
//! one becomes `io`, which reads as EIO. So when a call that changes the lock directory fails
//! with `io`, lockbydir asks the kernel itself whether it may write there (access(2) with
//! W_OK, which answers EROFS for a read-only mount and EACCES for missing permission, also to
//! root), and reports that errno instead.

use std::path::Path;

use lockbydir::types as wit;
use lockbydir::{Error, escape};

use super::exit::{self, Failure};

/// The protocol's operations that change the lock directory (those a read-only mount or a
/// missing write permission refuses).
const CHANGES: [&str; 3] = ["create-dir", "rename", "remove-dir"];

/// A lock error with its exit code; a change refused because the lock directory may not be
/// written says so, with the real errno (exit 77).
pub fn lock_failure(e: Error, lock_dir: &Path) -> anyhow::Error {
    let Error::Lock {
        lock,
        place,
        error: wit::Error::Io(io),
    } = &e
    else {
        return e.into();
    };
    if !CHANGES.contains(&io.operation.as_str()) {
        return e.into();
    }
    let Err(why) = writable(lock_dir) else {
        return e.into();
    };
    Failure::error(
        exit::io_code(why.kind()),
        format!(
            "lock `{}` in {}: {} `{}` in the lock directory failed: {}: the lock directory is \
             not writable; pass a writable one with --locks DIR",
            escape(lock),
            escape(place),
            escape(&io.operation),
            escape(&io.path),
            errno_text(&why)
        ),
    )
}

/// Whether lockbydir may create entries in `dir` (access(2), which also sees read-only
/// filesystems; root passes permission bits but not those).
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path contains NUL"))?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// An OS error as the lock component writes one: `Read-only file system (EROFS)`.
fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let what = text.split(" (os error ").next().unwrap_or(&text);
    match e.raw_os_error().and_then(errno_name) {
        Some(name) => format!("{what} ({name})"),
        None => text,
    }
}

/// The symbolic names of the errors access(2) gives for a directory.
fn errno_name(code: i32) -> Option<&'static str> {
    Some(match code {
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENOTDIR => "ENOTDIR",
        libc::ELOOP => "ELOOP",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EIO => "EIO",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_the_lock_component_writes_them() {
        let e = std::io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(errno_text(&e), "Read-only file system (EROFS)");
        let e = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(errno_text(&e).ends_with(&format!("(os error {})", libc::EDQUOT)));
    }
}
