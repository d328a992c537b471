//! What the library has to say besides its results, for the host to show as it likes: a
//! plugin's waits, refusals and released locks, and a compiled-code cache that could not be
//! used. The library prints nothing: an embedder passes a [`Reporter`] to
//! [`crate::embed::LockbydirCtxBuilder::on_event`] and [`crate::RuntimeBuilder::on_event`]
//! (the `lockbydir` command line prints each event as one line on stderr).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::display::escape;
use crate::error::Error;
use crate::types::HolderInfo;

/// Something worth telling about a plugin's locks or the cache. Its `Display` is one line,
/// with everything that came from the plugin or a lockdir escaped.
///
/// # Examples
///
/// ```
/// use lockbydir::report::Event;
///
/// let event = Event::Denied { plugin: "worker", rule: "lock name `x\n` is not allowed" };
/// assert_eq!(event.to_string(), "policy: refused plugin `worker`: lock name `x\\n` is not allowed");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The plugin has to wait for a lock: told once, when its wait starts (cargo's "Blocking
    /// waiting for file lock"). It promises nothing about when the wait ends.
    Waiting {
        /// The plugin's name.
        plugin: &'a str,
        /// The lock it waits for.
        lock: &'a str,
        /// Who holds it, if a holder was seen (else the plugin waits behind others).
        holder: Option<&'a HolderInfo>,
    },
    /// The host's policy refused one of the plugin's requests (the plugin gets `denied`).
    Denied {
        /// The plugin's name.
        plugin: &'a str,
        /// The rule it broke.
        rule: &'a str,
    },
    /// The plugin ended (or its context was dropped) while holding a lock, and the lock was
    /// released for it.
    Released {
        /// The plugin's name.
        plugin: &'a str,
        /// The lock.
        lock: &'a str,
    },
    /// A lock the plugin held when it ended could not be released for it; it frees itself at
    /// its deadline.
    NotReleased {
        /// The plugin's name.
        plugin: &'a str,
        /// The lock.
        lock: &'a str,
        /// Why.
        error: &'a Error,
    },
    /// A compiled component in the on-disk cache could not be loaded; it is compiled again.
    CacheEntryUnusable {
        /// The cache entry.
        entry: &'a Path,
        /// Why it could not be loaded.
        error: &'a str,
    },
    /// A compiled component could not be written to the on-disk cache; the next start
    /// compiles it again.
    CacheNotWritten {
        /// Which component.
        what: &'a str,
        /// The cache entry it would have been.
        entry: &'a Path,
        /// Why it could not be written.
        error: &'a str,
    },
}

/// Receives the [`Event`]s of the lock import: anything that can be called from several
/// threads.
pub type Reporter = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Waiting {
                plugin,
                lock,
                holder,
            } => {
                write!(
                    f,
                    "plugin `{}` blocking waiting for lock `{}`",
                    escape(plugin),
                    escape(lock)
                )?;
                match holder {
                    Some(h) if h.holder.is_empty() => {
                        write!(f, " held by an unnamed holder (fence {})", h.fence)
                    }
                    Some(h) => write!(f, " held by `{}` (fence {})", escape(&h.holder), h.fence),
                    None => write!(f, " (behind other waiters)"),
                }
            }
            Event::Denied { plugin, rule } => {
                write!(
                    f,
                    "policy: refused plugin `{}`: {}",
                    escape(plugin),
                    escape(rule)
                )
            }
            Event::Released { plugin, lock } => write!(
                f,
                "plugin `{}` ended while holding lock `{}`; released it",
                escape(plugin),
                escape(lock)
            ),
            Event::NotReleased {
                plugin,
                lock,
                error,
            } => write!(
                f,
                "could not release lock `{}` left by plugin `{}`: {error}; it frees itself at \
                 its deadline",
                escape(lock),
                escape(plugin)
            ),
            Event::CacheEntryUnusable { entry, error } => write!(
                f,
                "ignoring unusable cache entry {}: {}",
                escape(&entry.display().to_string()),
                escape(error)
            ),
            Event::CacheNotWritten { what, entry, error } => write!(
                f,
                "could not cache compiled {} in {}: {} (set LOCKBYDIR_CACHE_DIR to a writable \
                 directory)",
                escape(what),
                escape(&entry.display().to_string()),
                escape(error)
            ),
        }
    }
}
