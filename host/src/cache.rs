//! Compiling components, with an on-disk cache of compiled code so that a second start does
//! not pay for Cranelift again.
//!
//! A cache entry is named by a SHA-256 over wasmtime's compatibility hash for this engine
//! (its version and settings) and the component's bytes, so an entry is only ever loaded into
//! the engine configuration that wrote it. Entries are written to a temporary file and
//! renamed into place, so readers never see half an entry. The cache directory must be
//! trusted like the binary itself: loading compiled code from it is as powerful as running it.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::Error;
use crate::report::Event;

/// The default cache directory: `$LOCKBYDIR_CACHE_DIR`, else `$XDG_CACHE_HOME/lockbydir`, else
/// `$HOME/.cache/lockbydir`; `None` if none of these is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("LOCKBYDIR_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("lockbydir")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("lockbydir")))
}

/// Feeds `Hash` output into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only used to feed bytes into SHA-256")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache file for `bytes` compiled by `engine`.
fn entry_path(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update((bytes.len() as u64).to_le_bytes());
    hasher.0.update(bytes);
    let digest = hasher.0.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.cwasm"))
}

/// Compile `bytes` (a component) for `engine`, using and filling the cache in `cache_dir`.
///
/// A cache that cannot be read or written is skipped, and `report` is told why; only a
/// component that does not compile is an error.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    what: &str,
    cache_dir: Option<&Path>,
    report: &dyn Fn(&Event<'_>),
) -> Result<Component, Error> {
    let entry = cache_dir.map(|dir| entry_path(dir, engine, bytes));
    if let Some(entry) = entry.as_deref().filter(|e| e.is_file()) {
        // SAFETY: the entry was written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the file name), into the user's own cache directory.
        match unsafe { Component::deserialize_file(engine, entry) } {
            Ok(component) => return Ok(component),
            Err(e) => report(&Event::CacheEntryUnusable {
                entry,
                error: &format!("{e:#}"),
            }),
        }
    }
    let component = Component::new(engine, bytes).map_err(|reason| Error::Component {
        what: format!("compile {what}"),
        reason,
    })?;
    if let Some(entry) = entry
        && let Err(e) = store(&entry, &component)
    {
        report(&Event::CacheNotWritten {
            what,
            entry: &entry,
            error: &format!("{e:#}"),
        });
    }
    Ok(component)
}

fn store(entry: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = entry.parent().expect("entries live in a directory");
    std::fs::create_dir_all(dir)?;
    // A unique name (two threads or processes may store one entry at once), removed if
    // anything fails before the rename; created with the mode `fs::write` gives (0666 less
    // the umask), not tempfile's private 0600, so a shared cache stays shared.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".entry-").suffix(".tmp");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(&component.serialize()?)?;
    tmp.persist(entry)?;
    Ok(())
}
