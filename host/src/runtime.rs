//! The wasmtime engine and the compiled lock component, shared by every lock service and
//! plugin in a process.

use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::cache;
use crate::error::Error;
use crate::guests;
use crate::report::{Event, Reporter};

/// Compiled once per process, cloned cheaply into every thread.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    lock_component: Component,
    cache_dir: Option<PathBuf>,
    reporter: Option<Reporter>,
}

/// How to build a [`Runtime`].
///
/// # Examples
///
/// ```
/// use lockbydir::RuntimeBuilder;
///
/// # fn main() -> Result<(), lockbydir::Error> {
/// // The embedded lock component, compiled (or loaded from the cache) once per process.
/// let runtime = RuntimeBuilder::new().build()?;
/// let _ = runtime.engine(); // the engine to compile and run your plugins on
///
/// // A file that is no component is refused, saying why.
/// let err = RuntimeBuilder::new().lock_component("Cargo.toml").no_cache().build();
/// assert!(err.err().unwrap().to_string().contains("not a WebAssembly file"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct RuntimeBuilder {
    lock_component: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    reporter: Option<Reporter>,
}

impl RuntimeBuilder {
    /// Defaults: the embedded lock component, the default cache directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use the lock component in `file` instead of the embedded one.
    pub fn lock_component(mut self, file: impl Into<PathBuf>) -> Self {
        self.lock_component = Some(file.into());
        self
    }

    /// Cache compiled components in `dir` instead of [`cache::default_cache_dir`].
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Never read or write compiled code on disk.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    /// Tell `reporter` when the compiled-code cache could not be used (see
    /// [`crate::report::Event`]); without one, nothing is told.
    pub fn on_event(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Create the engine and compile (or load from cache) the lock component.
    pub fn build(self) -> Result<Runtime, Error> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // WASI 0.3 plugins and the waiting interface's `async func`.
        config.wasm_component_model_async(true);
        // Plugin deadlines interrupt running wasm at epoch ticks.
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|reason| Error::Component {
            what: "create the wasmtime engine".into(),
            reason,
        })?;
        start_epoch_ticker(&engine);
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.or_else(cache::default_cache_dir)
        };
        let report = report_to(&self.reporter);
        let lock_component = match &self.lock_component {
            None => cache::compile(
                &engine,
                guests::LOCK_COMPONENT,
                "the embedded lock component",
                cache_dir.as_deref(),
                &report,
            )?,
            Some(file) => {
                let bytes = read_component(file, "lock component")?;
                let what = format!("lock component {}", file.display());
                cache::compile(&engine, &bytes, &what, cache_dir.as_deref(), &report)?
            }
        };
        Ok(Runtime {
            engine,
            lock_component,
            cache_dir,
            reporter: self.reporter.clone(),
        })
    }
}

impl Runtime {
    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled lock component.
    pub fn lock_component(&self) -> &Component {
        &self.lock_component
    }

    /// Compile a plugin component (through the cache).
    pub fn compile_plugin(&self, bytes: &[u8], what: &str) -> Result<Component, Error> {
        let report = report_to(&self.reporter);
        cache::compile(
            &self.engine,
            bytes,
            what,
            self.cache_dir.as_deref(),
            &report,
        )
    }

    /// Read and compile a plugin component file.
    pub fn load_plugin(&self, file: &Path) -> Result<Component, Error> {
        let bytes = read_component(file, "plugin")?;
        self.compile_plugin(&bytes, &format!("plugin {}", file.display()))
    }
}

/// Tell `reporter` an event, if there is one.
fn report_to(reporter: &Option<Reporter>) -> impl Fn(&Event<'_>) + '_ {
    move |event| {
        if let Some(reporter) = reporter {
            reporter(event)
        }
    }
}

/// Read a component file, saying clearly when it is missing or not a component at all.
fn read_component(file: &Path, role: &str) -> Result<Vec<u8>, Error> {
    let fail = |message: String| Error::Component {
        what: format!("{role} {}", file.display()),
        reason: wasmtime::Error::msg(message),
    };
    let bytes = std::fs::read(file).map_err(|e| fail(format!("cannot read it: {e}")))?;
    if !bytes.starts_with(b"\0asm") {
        return Err(fail(
            "not a WebAssembly file (it does not start with `\\0asm`); pass a component built for wasm32-wasip2".into(),
        ));
    }
    // A core module has version 1; a component has layer 1 (bytes 6..8 = [1, 0]).
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(fail(
            "a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
        ));
    }
    Ok(bytes)
}

/// Advance the engine's epoch every [`crate::limits::EPOCH_TICK`] for as long as the engine
/// lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("lockbydir-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(crate::limits::EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}
