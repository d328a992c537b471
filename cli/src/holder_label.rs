//! The holder labels lockbydir's own writers write: `<program> (pid <pid> on <host>)`.
//!
//! The protocol stores only a free-form label (see `holder` in `wit/lock.wit`). `lockbydir
//! exec` labels its acquisitions `<program> (pid <pid> on <host>)`, with its own pid and
//! the machine's host name, and `status` reads the pid and host back from any label that ends
//! that way ([`origin`]). The label is built to fit the 120 encoded bytes an entry keeps
//! ([`MAX_ENCODED_LABEL`]): the program's name is cut first, then the host name is shortened
//! to its first part, then left out, so the pid always survives. A label is only a claim:
//! anyone who may write the lock directory can write any label.

use lockbydir_protocol::entry::{MAX_ENCODED_LABEL, encode_label};

/// Where a holder runs, as its label tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The holder's process id.
    pub pid: u32,
    /// The machine's host name, if the label names it.
    pub host: Option<String>,
}

/// The label `<program> (pid <pid> on <host>)`, cut to fit what an entry keeps (see the
/// module documentation); `host` is left out where it is empty.
pub fn label(program: &str, pid: u32, host: &str) -> String {
    let plain = format!(" (pid {pid})");
    let short = host.split('.').next().unwrap_or_default();
    let candidates = match host.is_empty() {
        true => Vec::new(),
        false => vec![
            format!(" (pid {pid} on {host})"),
            format!(" (pid {pid} on {short})"),
        ],
    };
    // At most half the room goes to the suffix; the plain one always fits (at most 43 bytes).
    let suffix = candidates
        .into_iter()
        .find(|s| encode_label(s).len() <= MAX_ENCODED_LABEL / 2)
        .unwrap_or(plain);
    let budget = MAX_ENCODED_LABEL - encode_label(&suffix).len();
    let mut used = 0;
    let mut kept = String::new();
    for c in program.chars() {
        let piece = encode_label(c.encode_utf8(&mut [0; 4])).len();
        if used + piece > budget {
            break;
        }
        used += piece;
        kept.push(c);
    }
    kept + &suffix
}

/// The pid and host a label of the form `… (pid <pid> on <host>)` or `… (pid <pid>)` names;
/// `None` for any other label.
pub fn origin(label: &str) -> Option<Origin> {
    let inner = label.strip_suffix(')')?;
    let start = inner.rfind(" (pid ")?;
    let rest = &inner[start + " (pid ".len()..];
    let (pid, host) = match rest.split_once(" on ") {
        Some((pid, host)) => (pid, Some(host)),
        None => (rest, None),
    };
    let canonical =
        !pid.is_empty() && !pid.starts_with('0') && pid.bytes().all(|b| b.is_ascii_digit());
    let host_ok = host.is_none_or(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    });
    if !canonical || !host_ok {
        return None;
    }
    Some(Origin {
        pid: pid.parse().ok()?,
        host: host.map(str::to_owned),
    })
}

/// This machine's host name ("" if it has none that is valid UTF-8).
pub fn this_host() -> String {
    gethostname::gethostname().into_string().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockbydir_protocol::entry::kept_label;

    #[test]
    fn a_label_carries_pid_and_host_and_reads_back() {
        let l = label("sleep", 4242, "build-7.example.org");
        assert_eq!(l, "sleep (pid 4242 on build-7.example.org)");
        assert_eq!(
            origin(&l),
            Some(Origin {
                pid: 4242,
                host: Some("build-7.example.org".into())
            })
        );
        assert_eq!(label("sh", 7, ""), "sh (pid 7)");
        assert_eq!(origin("sh (pid 7)").map(|o| o.host), Some(None));
    }

    #[test]
    fn long_names_are_cut_so_the_pid_survives_the_entry() {
        let long_host = "a.".repeat(40) + "b";
        for (program, host) in [
            ("p".repeat(300), "host"),
            ("ü".repeat(100), "host"),
            ("x".into(), long_host.as_str()),
        ] {
            let l = label(&program, 4_194_304, host);
            assert_eq!(kept_label(&l), l, "{l}");
            let o = origin(&l).unwrap_or_else(|| panic!("{l}"));
            assert_eq!(o.pid, 4_194_304);
        }
        let l = label("x", 1, &long_host);
        assert_eq!(origin(&l).unwrap().host.as_deref(), Some("a"), "{l}");
    }

    #[test]
    fn other_labels_name_no_pid() {
        for l in [
            "busy bee",
            "x (pid )",
            "x (pid 01)",
            "x (pid 1 on )",
            "x (pid 1 on a b)",
            "x (pid -1)",
            "x (pid 99999999999)",
        ] {
            assert_eq!(origin(l), None, "{l}");
        }
    }
}
