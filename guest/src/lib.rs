//! The lockbydir lock as a WASI 0.2 component.
//!
//! Exports `lockbydir:lock/lock@0.2.0`, and the steps of a wait for lockbydir's own host
//! (`lockbydir:lock-steps/steps`, private; world `provider` of `wit-host/`). Everything it touches goes through WASI: the lock directory
//! is the preopened directory mapped as `.`, deadlines use wasi:clocks, tokens wasi:random.
//! Any component host that grants those can run it. The protocol itself lives in
//! `lockbydir-protocol`; this crate only converts between it and the WIT types.

mod convert;
mod env;
mod wasi_fs;

use std::cell::RefCell;

use env::GuestEnv;
use lockbydir_protocol as protocol;
use protocol::Env;
use wasi_fs::WasiFs;

wit_bindgen::generate!({
    path: "../wit-host",
    world: "lockbydir:lock-steps/provider",
    generate_all,
});

use exports::lockbydir::lock::lock::{Guest, GuestLock, LockBorrow};
use exports::lockbydir::lock_steps::steps::{Sleep, Step};
use lockbydir::lock::types::{
    AcquireOutcome, Error, LockState, LockStatus, Options, QueueStatus, ReleaseReport,
};

/// The lock directory as this component sees it: its preopen, mapped as `.`.
fn lock_dir() -> WasiFs {
    WasiFs::lock_dir()
}

struct Component;

impl Guest for Component {
    type Lock = LockHandle;

    fn list_locks() -> Result<Vec<LockStatus>, Error> {
        let locks =
            protocol::list_locks(&lock_dir(), &GuestEnv::default()).map_err(convert::error)?;
        Ok(locks
            .into_iter()
            .map(|(name, state)| LockStatus {
                name: name.as_str().to_owned(),
                state: state.map(convert::state).map_err(convert::error),
            })
            .collect())
    }

    fn now_ms() -> u64 {
        GuestEnv::default().now_ms()
    }

    fn queue(name: String) -> Result<QueueStatus, Error> {
        let name =
            protocol::LockName::new(&name).map_err(|e| convert::error(protocol::Error::from(e)))?;
        let status = protocol::queue_status(&lock_dir(), &GuestEnv::default(), &name);
        status.map(convert::queue).map_err(convert::error)
    }
}

/// One `lock` resource: a protocol handle. Dropping it releases a held lock.
pub struct LockHandle(RefCell<protocol::Lock<WasiFs, GuestEnv>>);

impl GuestLock for LockHandle {
    fn open(name: String, options: Options) -> Result<exports::lockbydir::lock::lock::Lock, Error> {
        let lock = protocol::Lock::new(
            lock_dir(),
            GuestEnv::default(),
            &name,
            convert::options(options),
        )
        .map_err(convert::error)?;
        Ok(exports::lockbydir::lock::lock::Lock::new(LockHandle(
            RefCell::new(lock),
        )))
    }

    fn name(&self) -> String {
        self.0.borrow().name().as_str().to_owned()
    }

    fn acquire(&self) -> Result<AcquireOutcome, Error> {
        let outcome = self.0.borrow_mut().acquire();
        outcome.map(convert::outcome).map_err(convert::error)
    }

    fn try_acquire(&self) -> Result<AcquireOutcome, Error> {
        let outcome = self.0.borrow_mut().try_acquire();
        outcome.map(convert::outcome).map_err(convert::error)
    }

    fn refresh(&self) -> Result<u64, Error> {
        self.0.borrow_mut().refresh().map_err(convert::error)
    }

    fn release(&self) -> Result<ReleaseReport, Error> {
        let released = self.0.borrow_mut().release();
        released.map(convert::released).map_err(convert::error)
    }

    fn inspect(&self) -> Result<LockState, Error> {
        self.0
            .borrow()
            .inspect()
            .map(convert::state)
            .map_err(convert::error)
    }

    fn fence(&self) -> Option<u64> {
        self.0.borrow().fence()
    }
}

/// The steps of a wait, for a host that sleeps between them without holding a thread.
impl exports::lockbydir::lock_steps::steps::Guest for Component {
    fn acquire_step(lock: LockBorrow<'_>) -> Result<Step, Error> {
        let step = lock.get::<LockHandle>().0.borrow_mut().acquire_step();
        match step.map_err(convert::error)? {
            protocol::Step::Done(outcome) => Ok(Step::Done(convert::outcome(outcome))),
            protocol::Step::Sleep { until_changed, us } => {
                Ok(Step::Sleep(Sleep { until_changed, us }))
            }
        }
    }

    fn cancel_wait(lock: LockBorrow<'_>) {
        lock.get::<LockHandle>().0.borrow_mut().cancel_wait();
    }
}

// Unused borrow type kept out of warnings: resources are only used by handle here.
#[allow(dead_code)]
type _Borrow<'a> = LockBorrow<'a>;

export!(Component);
