//! The process hammer on every filesystem this machine can mount: tmpfs, ext4, xfs and btrfs
//! (loop-mounted images) and FUSE (bindfs). A filesystem that cannot be mounted here is
//! skipped with the reason printed; `.ci/run` installs the tools where it can.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Scratch;

/// A mounted filesystem, unmounted when dropped.
struct Mount {
    point: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let o = cmd
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Mount a filesystem of `kind` at `point`: tmpfs directly, FUSE over `scratch`, and the others
/// from a sparse image file in `scratch`.
fn mount(kind: &str, scratch: &Scratch, point: &Path) -> Result<Mount, String> {
    std::fs::create_dir_all(point).map_err(|e| e.to_string())?;
    match kind {
        "tmpfs" => run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(point))?,
        "fuse" => {
            let source = scratch.dir("fuse-source");
            run(Command::new("bindfs").arg(&source).arg(point))?
        }
        _ => {
            let image = scratch.join(&format!("{kind}.img"));
            let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
            file.set_len(320 << 20).map_err(|e| e.to_string())?; // xfs needs 300 MiB
            let mkfs = format!("mkfs.{kind}");
            run(Command::new(&mkfs).arg("-q").arg(&image))?;
            run(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(point))?
        }
    }
    Ok(Mount {
        point: point.to_owned(),
    })
}

fn hammer_on(kind: &str) {
    let scratch = Scratch::new(&format!("fs-{kind}"));
    let point = scratch.join("mnt");
    let mounted = match mount(kind, &scratch, &point) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: cannot mount {kind} here: {why}");
            return;
        }
    };
    let locks = mounted.point.join("locks");
    let work = mounted.point.join("work");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    common::hammer_with_processes(&locks, &work, 10);
    eprintln!("{kind}: 40 holds by 4 processes, exact count, no overlap");
}

#[test]
fn hammer_on_tmpfs() {
    hammer_on("tmpfs");
}

#[test]
fn hammer_on_ext4() {
    hammer_on("ext4");
}

#[test]
fn hammer_on_xfs() {
    hammer_on("xfs");
}

#[test]
fn hammer_on_btrfs() {
    hammer_on("btrfs");
}

#[test]
fn hammer_on_fuse() {
    hammer_on("fuse");
}
