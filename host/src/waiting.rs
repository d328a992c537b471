//! The one line a waiter prints when it has to wait (cargo's "Blocking waiting for file lock").

use std::fmt;

use crate::bindings::wit;
use crate::display::escape;

/// "Blocking waiting for lock `N` held by `H` (fence F, expires in T unless refreshed)".
pub struct WaitNotice {
    line: String,
}

impl WaitNotice {
    /// The notice for `who` waiting on lock `lock`, whose holder is `holder` (if one was
    /// seen), at wall-clock time `now_ms`.
    pub fn new(who: &str, lock: &str, holder: Option<&wit::HolderInfo>, now_ms: u64) -> Self {
        let held_by = match holder {
            Some(h) => {
                let label = if h.holder.is_empty() {
                    "an unnamed holder".into()
                } else {
                    escape(&h.holder)
                };
                let left = h.deadline_ms.saturating_sub(now_ms);
                format!(
                    " held by `{label}` (fence {}, expires in {} unless refreshed)",
                    h.fence,
                    crate::duration::display_ms(left)
                )
            }
            None => String::new(),
        };
        WaitNotice {
            line: format!(
                "lockbydir: {} blocking waiting for lock `{}`{held_by}",
                escape(who),
                escape(lock)
            ),
        }
    }
}

impl fmt::Display for WaitNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}
