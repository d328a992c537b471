//! The lock component's `wasi:filesystem/types.[method]descriptor.stat-at`, through which it
//! asks to be woken (the `LOCKBYDIR_WAKEUPS=stat-at` convention, see `guest/src/env.rs`).
//!
//! The shadowing function watches the entry itself *before* making the real stat (so no
//! rename can slip between the look and the watch), then makes it through wasmtime-wasi's
//! own implementation and hands the watch to the next sleep if the entry was there. Any other
//! `stat-at` (other paths, other descriptors, wake-ups not offered) is only counted.

use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    self as fs, Descriptor, DescriptorStat, ErrorCode, HostDescriptor, PathFlags,
};

use super::wakeup::Sleeper;

/// The interface's name as wasmtime-wasi defines it (the linker resolves every compatible
/// 0.2.x import of the lock component to it, as for the monotonic clock).
const INTERFACE: &str = "wasi:filesystem/types@0.2.12";

/// Replace `stat-at` in `linker` (after `wasmtime_wasi::p2::add_to_linker_sync`) with the
/// watching one; `sleeper` gives the Store's [`Sleeper`].
pub(crate) fn shadow_stat_at<T: WasiView + 'static>(
    linker: &mut Linker<T>,
    sleeper: fn(&T) -> &Arc<Sleeper>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = linker.instance(INTERFACE).and_then(|mut instance| {
        instance.func_wrap(
            "[method]descriptor.stat-at",
            move |mut store: StoreContextMut<'_, T>,
                  (fd, flags, path): (Resource<Descriptor>, PathFlags, String)|
                  -> wasmtime::Result<(Result<DescriptorStat, ErrorCode>,)> {
                let data = store.data_mut();
                let sleeper = Arc::clone(sleeper(data));
                let registration = match data.ctx().table.get(&fd) {
                    Ok(wasmtime_wasi::filesystem::Descriptor::Dir(dir)) => {
                        sleeper.watch_before_stat(&dir.dir, &path)
                    }
                    _ => sleeper.watch_before_stat_of_file(),
                };
                let mut view = data.filesystem();
                let stat = match HostDescriptor::stat_at(&mut view, fd, flags, path) {
                    Ok(stat) => Ok(stat),
                    // As the generated bindings do: an error code is the guest's, anything
                    // else traps.
                    Err(e) => Err(fs::Host::convert_error_code(&mut view, e)?),
                };
                sleeper.stat_done(registration, stat.is_ok());
                Ok((stat,))
            },
        )
    });
    linker.allow_shadowing(false);
    added
}

#[cfg(test)]
mod tests {
    use crate::backend::{Backend, LockDirBackend};
    use crate::runtime::RuntimeBuilder;
    use crate::types::{AcquireOutcome, Options, Tuning};

    #[test]
    fn the_lock_component_s_stats_go_through_the_shadowing_stat_at() {
        let dir = std::env::temp_dir().join(format!("lockbydir-statat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = RuntimeBuilder::new().build().unwrap();
        let options = |wait_ms| Options {
            lease_ms: Some(60_000),
            wait_ms: Some(wait_ms),
            holder: Some("test".into()),
            tuning: Some(Tuning {
                min_poll_ms: 1,
                max_poll_ms: 5,
                max_clock_skew_ms: 1_000,
            }),
            ..Options::default()
        };
        let mut holder = LockDirBackend::new(&runtime, &dir).unwrap();
        let held = holder.open("bed", &options(0)).unwrap();
        let outcome = holder.acquire(held).unwrap();
        assert!(matches!(outcome, AcquireOutcome::Acquired(_)));
        // A waiter looks at the held lock while it waits (a stat of its state entry).
        let mut waiter = LockDirBackend::new(&runtime, &dir).unwrap();
        let waiting = waiter.open("bed", &options(200)).unwrap();
        let outcome = waiter.acquire(waiting).unwrap();
        assert!(matches!(outcome, AcquireOutcome::Busy(_)));
        assert!(
            waiter.wait_stats().stat_at_calls > 0,
            "{:?}",
            waiter.wait_stats()
        );
        waiter.close(waiting).unwrap();
        holder.close(held).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
