//! The one line a waiter prints when it has to wait (cargo's "Blocking waiting for file lock").

use std::fmt;
use std::path::Path;

use crate::bindings::wit;
use crate::display::escape;

/// "exec blocking waiting for lock `N` held by `H` (fence F) in DIR": said once, when a
/// waiter starts waiting. It promises nothing about when the wait ends (a holder that
/// refreshes keeps the lock).
pub struct WaitNotice {
    line: String,
}

impl WaitNotice {
    /// The notice for `who` waiting on lock `lock`, whose holder is `holder` (if one was
    /// seen). `_now_ms` is no longer shown (the line used to promise an expiry); it stays so
    /// that callers need not change.
    pub fn new(who: &str, lock: &str, holder: Option<&wit::HolderInfo>, _now_ms: u64) -> Self {
        let held_by = match holder {
            Some(h) => {
                let label = if h.holder.is_empty() {
                    "an unnamed holder".into()
                } else {
                    escape(&h.holder)
                };
                format!(" held by `{label}` (fence {})", h.fence)
            }
            None => " (behind other waiters)".to_owned(),
        };
        WaitNotice {
            line: format!(
                "lockbydir: {} blocking waiting for lock `{}`{held_by}",
                escape(who),
                escape(lock)
            ),
        }
    }

    /// The same notice, naming the lock directory too.
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.line = format!("{} in {}", self.line, escape(&dir.display().to_string()));
        self
    }
}

impl fmt::Display for WaitNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}
