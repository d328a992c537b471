//! Composing a plugin with the lock component: the plugin's `lockbydir:lock/lock` import is
//! served by a copy of the lock component inside the result, which then needs only WASI 0.2
//! and a preopened lock directory, so it runs on hosts that know nothing of lockbydir.
//!
//! The composition is wac-graph's `plug`: the lock component is instantiated once, its
//! `lockbydir:lock/lock@0.2.0` export is passed to the plugin's import of that name, and the
//! plugin's exports (a command's `wasi:cli/run`) are the result's. Both components' WASI
//! imports stay imports of the result, shared.

use std::path::{Path, PathBuf};

use wac_graph::{CompositionGraph, EncodeOptions, plug, types::Package};

/// The interface a plugin imports to take locks, and the version the lock component serves.
pub const LOCK_INTERFACE: &str = "lockbydir:lock/lock@0.2.0";

/// The prefix of every version of the lock interface.
const LOCK_INTERFACE_PREFIX: &str = "lockbydir:lock/lock@";

/// Why a plugin could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The plugin file could not be read.
    #[error("cannot read the plugin {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is a core WebAssembly module, not a component.
    #[error(
        "{path} is a core WebAssembly module, not a component: build the plugin for \
         wasm32-wasip2 (or turn the module into a component with `wasm-tools component new`)"
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// The file is not WebAssembly, or not a valid component.
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the parser or validator said.
        reason: String,
    },
    /// The plugin imports an older, incompatible version of the lock interface.
    #[error(
        "{path} imports {found}, which this lockbydir's lock component does not serve (it \
         serves {LOCK_INTERFACE}): rebuild the plugin against the WIT of `lockbydir component \
         --wit-dir wit`, or run it as it is with `lockbydir run`, which serves both"
    )]
    OtherVersion {
        /// The file.
        path: PathBuf,
        /// The interface it imports.
        found: String,
    },
    /// The plugin imports no lock interface at all.
    #[error(
        "{path} imports no lock interface ({LOCK_INTERFACE}), so there is nothing to compose: \
         its imports are {imports}"
    )]
    NoLockImport {
        /// The file.
        path: PathBuf,
        /// What it imports, comma-separated (`none` if nothing).
        imports: String,
    },
    /// The output would replace the plugin itself.
    #[error(
        "the output {out} is the plugin itself: give another file with -o (the plugin is \
         left as it is)"
    )]
    OutputIsInput {
        /// The output path.
        out: PathBuf,
    },
    /// Composing failed (the lock component's export does not fit the plugin's import).
    #[error("cannot compose {path} with the lock component: {reason}")]
    Compose {
        /// The plugin.
        path: PathBuf,
        /// What wac-graph said, with its causes.
        reason: String,
    },
    /// The result could not be written.
    #[error("cannot write the composed plugin to {path}: {source}")]
    Write {
        /// The file (or the temporary file beside it).
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Compose `plugin` (a component's bytes, read from `path`, named in errors) with the lock
/// component `lock` (a component exporting [`LOCK_INTERFACE`]); returns the composed
/// component's bytes.
pub fn compose_bytes(path: &Path, plugin: &[u8], lock: &[u8]) -> Result<Vec<u8>, ComposeError> {
    if plugin.starts_with(b"\0asm\x01\0\0\0") {
        return Err(ComposeError::CoreModule {
            path: path.to_owned(),
        });
    }
    let invalid = |e: anyhow::Error| ComposeError::Invalid {
        path: path.to_owned(),
        reason: format!("{e:#}"),
    };
    let mut graph = CompositionGraph::new();
    let socket =
        Package::from_bytes("plugin:plugin", None, plugin, graph.types_mut()).map_err(invalid)?;
    let imports: Vec<String> = graph.types()[socket.ty()].imports.keys().cloned().collect();
    if !imports.iter().any(|i| i == LOCK_INTERFACE) {
        if let Some(found) = imports
            .iter()
            .find(|i| i.starts_with(LOCK_INTERFACE_PREFIX))
        {
            return Err(ComposeError::OtherVersion {
                path: path.to_owned(),
                found: found.clone(),
            });
        }
        return Err(ComposeError::NoLockImport {
            path: path.to_owned(),
            imports: if imports.is_empty() {
                "none".to_owned()
            } else {
                imports.join(", ")
            },
        });
    }
    let failed = |reason: String| ComposeError::Compose {
        path: path.to_owned(),
        reason,
    };
    let lock = Package::from_bytes("lockbydir:lock", None, lock, graph.types_mut())
        .map_err(|e| failed(format!("the lock component: {e:#}")))?;
    let socket = graph
        .register_package(socket)
        .map_err(|e| failed(e.to_string()))?;
    let lock = graph
        .register_package(lock)
        .map_err(|e| failed(e.to_string()))?;
    plug(&mut graph, vec![lock], socket).map_err(|e| failed(chain(&e)))?;
    graph
        .encode(EncodeOptions::default())
        .map_err(|e| failed(chain(&e)))
}

/// Read the plugin at `input`, compose it with `lock`, and write the result to `output` (by a
/// temporary file beside it, renamed into place, so a failure leaves no half-written file).
/// Refuses an `output` that is `input` itself (by path or by being the same file).
pub fn compose_file(input: &Path, output: &Path, lock: &[u8]) -> Result<(), ComposeError> {
    let plugin = std::fs::read(input).map_err(|source| ComposeError::Read {
        path: input.to_owned(),
        source,
    })?;
    if same_file(input, output) {
        return Err(ComposeError::OutputIsInput {
            out: output.to_owned(),
        });
    }
    let composed = compose_bytes(input, &plugin, lock)?;
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ComposeError::Write { path, source }
    };
    // 0666 less the umask, as any file a command writes, not the 0600 of a temporary file.
    let mut temp = tempfile::Builder::new()
        .prefix(".lockbydir-compose-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(write_err(output))?;
    std::io::Write::write_all(&mut temp, &composed).map_err(write_err(temp.path()))?;
    temp.persist(output)
        .map_err(|e| ComposeError::Write {
            path: output.to_owned(),
            source: e.error,
        })
        .map(|_| ())
}

/// Whether `a` and `b` name the same file (the same device and inode; `b` may not exist).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
