//! What the benchmark reads from the kernel: CPU time of threads and child processes, resident
//! memory, the filesystem type, the load, and the wall clock.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// Nanoseconds since the Unix epoch (the clock the contenders' logs use).
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU time a thread of this process has used, in ns (0 if it is gone): the first field of
/// `/proc/self/task/<tid>/schedstat`, exact to the nanosecond.
pub fn thread_cpu_ns(tid: i32) -> u64 {
    schedstat(&format!("/proc/self/task/{tid}/schedstat"))
}

/// CPU time used so far by every live thread of process `pid`, in ns.
pub fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| schedstat(&t.path().join("schedstat").to_string_lossy()))
        .sum()
}

fn schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Wait for child `pid` (which must not have been waited for) and return its exit code and
/// the CPU time it used in all, in ns.
pub fn wait_child(pid: u32) -> anyhow::Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a status and a rusage owned by this frame.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    anyhow::ensure!(
        r == pid as i32,
        "wait for process {pid}: {}",
        std::io::Error::last_os_error()
    );
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Ok((code, tv(usage.ru_utime) + tv(usage.ru_stime)))
}

/// This process's resident memory, in bytes.
pub fn rss_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The kind of filesystem `dir` is on (`tmpfs`, `ext4`, ...).
pub fn fs_type(dir: &Path) -> anyhow::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statfs is a valid value for statfs to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statfs owned by this frame.
    let r = unsafe { libc::statfs(path.as_ptr(), &mut st) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("statfs {}", dir.display()));
    }
    Ok(match st.f_type as i64 {
        0x0102_1994 => "tmpfs",
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlayfs",
        0x6969 => "nfs",
        0x2FC1_2FC1 => "zfs",
        0x6573_5546 => "fuse",
        other => return Ok(format!("0x{other:x}")),
    }
    .to_owned())
}

/// Lock an open file with the kernel's flock (blocking).
pub fn flock(file: &std::fs::File, exclusive: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_UN
    };
    // SAFETY: flock on a descriptor this File owns.
    match unsafe { libc::flock(file.as_raw_fd(), op) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
