//! The one entry inside a lockdir that records the lock's state.
//!
//! A lockdir always contains exactly one state entry, an empty directory whose *name* holds
//! the whole state, so that every change of state is one atomic `rename` of that entry:
//!
//! - `free.<fence>`: nobody holds the lock; `<fence>` is the last token handed out.
//! - `free+.<fence>`: the same, released by a holder whose entry was marked: waiters queued.
//! - `held.<fence>.<since>.<deadline>.<timeout>.<token>.<holder>`: held since `<since>`
//!   until `<deadline>` (milliseconds since the Unix epoch, holder's clock), with the timeout
//!   the holder chose, a random per-acquisition `<token>` (16 hex digits) that makes the name
//!   unique, and the holder's label, percent-encoded.
//! - `held+.<same fields>`: the same, marked by a waiter: someone queued while it was held,
//!   so its holder must not take the lock straight back after releasing it (see
//!   [`crate::lock`], "Fairness").
//!
//! The waiters' *tickets* ([`Ticket`]), `wait.<arrival>.<token>.<expires>`, live in a sibling
//! directory `<name>.queue`, not in the lockdir: they are not state, they only order the
//! waiters, and keeping them out of the lockdir keeps its mtime the time of the last state
//! change (which the takeover rule reads).
//!
//! Names that do not parse are ignored (a filesystem may add its own files).

/// Most bytes the percent-encoded holder label may take in an entry name.
pub const MAX_ENCODED_LABEL: usize = 120;

/// The holder of a lock, as recorded in its state entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holder's label.
    pub label: String,
    /// Fencing token of this acquisition.
    pub fence: u64,
    /// When it was acquired (ms since the epoch, holder's clock).
    pub since_ms: u64,
    /// When it expires unless refreshed (ms since the epoch, holder's clock).
    pub deadline_ms: u64,
    /// The timeout the holder chose, in ms.
    pub timeout_ms: u64,
    /// Random per-acquisition token: makes the entry's name unique.
    pub token: u64,
    /// Whether a waiter marked the entry: someone queued for the lock while it was held.
    pub waiters: bool,
}

/// A lock's state entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Free; `fence` is the last token handed out.
    Free {
        /// The last fencing token handed out.
        fence: u64,
        /// Whether waiters queued while it was last held (the entry was marked).
        waiters: bool,
    },
    /// Held.
    Held(Holder),
}

impl Entry {
    /// The entry's name inside the lockdir.
    pub fn encode(&self) -> String {
        match self {
            Entry::Free { fence, waiters } => {
                format!("{}.{fence}", if *waiters { "free+" } else { "free" })
            }
            Entry::Held(h) => format!(
                "{}.{}.{}.{}.{}.{:016x}.{}",
                if h.waiters { "held+" } else { "held" },
                h.fence,
                h.since_ms,
                h.deadline_ms,
                h.timeout_ms,
                h.token,
                encode_label(&h.label)
            ),
        }
    }

    /// Parse an entry name; `None` if it is not a state entry.
    pub fn parse(name: &str) -> Option<Entry> {
        let mut parts = name.split('.');
        match parts.next()? {
            kind @ ("free" | "free+") => {
                let fence = parse_u64(parts.next()?)?;
                parts.next().is_none().then_some(Entry::Free {
                    fence,
                    waiters: kind == "free+",
                })
            }
            kind @ ("held" | "held+") => {
                let fence = parse_u64(parts.next()?)?;
                let since_ms = parse_u64(parts.next()?)?;
                let deadline_ms = parse_u64(parts.next()?)?;
                let timeout_ms = parse_u64(parts.next()?)?;
                let token = parts.next()?;
                if token.len() != 16 {
                    return None;
                }
                let token = u64::from_str_radix(token, 16).ok()?;
                let label = decode_label(parts.next()?)?;
                parts.next().is_none().then_some(Entry::Held(Holder {
                    label,
                    fence,
                    since_ms,
                    deadline_ms,
                    timeout_ms,
                    token,
                    waiters: kind == "held+",
                }))
            }
            _ => None,
        }
    }

    /// The fencing token recorded in this entry (the last one handed out).
    pub fn fence(&self) -> u64 {
        match self {
            Entry::Free { fence, .. } => *fence,
            Entry::Held(h) => h.fence,
        }
    }

    /// Whether the entry is marked: waiters queued while it was (last) held.
    pub fn waiters(&self) -> bool {
        match self {
            Entry::Free { waiters, .. } => *waiters,
            Entry::Held(h) => h.waiters,
        }
    }
}

/// A waiter's place in the queue: the directory `wait.<arrival>.<token>.<expires>` in the
/// lockdir. Waiters are served in the order of `(arrival, token)`. A ticket counts until
/// `expires` (ms since the epoch, its owner's clock); its owner renames it to a later expiry
/// while it waits, so the ticket of a waiter that crashed stops counting soon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket {
    /// When its owner started waiting (ms since the epoch, owner's clock).
    pub arrival_ms: u64,
    /// The owner's random token: breaks ties and makes the name unique.
    pub token: u64,
    /// When it stops counting unless renewed (ms since the epoch, owner's clock).
    pub expires_ms: u64,
}

impl Ticket {
    /// The ticket's name inside the lockdir.
    pub fn encode(&self) -> String {
        format!(
            "wait.{}.{:016x}.{}",
            self.arrival_ms, self.token, self.expires_ms
        )
    }

    /// Parse a ticket name; `None` if it is not one.
    pub fn parse(name: &str) -> Option<Ticket> {
        let mut parts = name.split('.');
        if parts.next()? != "wait" {
            return None;
        }
        let arrival_ms = parse_u64(parts.next()?)?;
        let token = parts.next()?;
        if token.len() != 16 {
            return None;
        }
        let token = u64::from_str_radix(token, 16).ok()?;
        let expires_ms = parse_u64(parts.next()?)?;
        parts.next().is_none().then_some(Ticket {
            arrival_ms,
            token,
            expires_ms,
        })
    }

    /// Whether `self` is served before `other`.
    pub fn is_before(&self, other: &Ticket) -> bool {
        (self.arrival_ms, self.token) < (other.arrival_ms, other.token)
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    // Only canonical decimal: no sign, no leading zeros, so each state has exactly one name.
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Percent-encode a label so it holds no `.` or path characters; long labels are cut (at a
/// character boundary) so the encoding fits in [`MAX_ENCODED_LABEL`] bytes.
pub fn encode_label(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        let mut buf = [0u8; 4];
        let piece: String = c
            .encode_utf8(&mut buf)
            .bytes()
            .map(|b| {
                if is_plain(b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        if out.len() + piece.len() > MAX_ENCODED_LABEL {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// The part of `label` an entry keeps: the longest prefix, cut at a character boundary,
/// whose encoding fits in [`MAX_ENCODED_LABEL`] bytes (what [`encode_label`] writes). A host
/// that forwards labels cuts them with this before passing them on, so that nobody holds more
/// of a label than the lock directory does.
pub fn kept_label(label: &str) -> &str {
    let mut encoded = 0;
    for (i, c) in label.char_indices() {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let piece: usize = bytes.iter().map(|&b| if is_plain(b) { 1 } else { 3 }).sum();
        if encoded + piece > MAX_ENCODED_LABEL {
            return &label[..i];
        }
        encoded += piece;
    }
    label
}

fn decode_label(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if is_plain(bytes[i]) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(label: &str) -> Holder {
        Holder {
            label: label.into(),
            fence: 7,
            since_ms: 1_700_000_000_000,
            deadline_ms: 1_700_000_030_000,
            timeout_ms: 30_000,
            token: 0xdead_beef,
            waiters: false,
        }
    }

    #[test]
    fn entries_round_trip() {
        for entry in [
            Entry::Free {
                fence: 0,
                waiters: false,
            },
            Entry::Free {
                fence: u64::MAX,
                waiters: true,
            },
            Entry::Held(holder("")),
            Entry::Held(holder("pid 42 on host.example/α")),
            Entry::Held(Holder {
                waiters: true,
                ..holder("x")
            }),
        ] {
            let name = entry.encode();
            assert!(!name.contains('/') && name.len() <= 255, "{name}");
            assert_eq!(Entry::parse(&name), Some(entry));
        }
    }

    #[test]
    fn long_labels_are_cut_to_fit() {
        let entry = Entry::Held(holder(&"é".repeat(500)));
        let name = entry.encode();
        assert!(name.len() <= 255);
        let Some(Entry::Held(h)) = Entry::parse(&name) else {
            panic!("{name} did not parse")
        };
        assert_eq!(h.label, "é".repeat(MAX_ENCODED_LABEL / 6));
    }

    #[test]
    fn the_kept_label_is_exactly_what_an_entry_keeps() {
        for label in [
            String::new(),
            "plain-label".to_owned(),
            "x".repeat(MAX_ENCODED_LABEL),
            "x".repeat(MAX_ENCODED_LABEL + 1),
            "é".repeat(500),
            format!("{}é", "x".repeat(MAX_ENCODED_LABEL - 5)),
            "a.b/c d\u{1F600}".repeat(40),
        ] {
            let kept = kept_label(&label);
            assert!(label.starts_with(kept));
            assert_eq!(encode_label(kept), encode_label(&label), "{label:?}");
            assert!(encode_label(kept).len() <= MAX_ENCODED_LABEL);
            let Some(Entry::Held(h)) = Entry::parse(&Entry::Held(holder(&label)).encode()) else {
                panic!("{label:?} did not round-trip")
            };
            assert_eq!(h.label, kept);
        }
    }

    #[test]
    fn foreign_names_are_not_entries() {
        for name in [
            "free",
            "free.",
            "free.01",
            "free.1.2",
            "free.-1",
            "held.1.2.3.4.00000000deadbeef",
            "held.1.2.3.4.deadbeef.x",
            "held.1.2.3.4.00000000deadbeef.a.b",
            "held.1.2.3.4.00000000deadbeef.%zz",
            ".nfs000001",
            "held-.1.2.3.4.00000000deadbeef.x",
            "wait.1.00000000deadbeef.2",
            "",
        ] {
            assert_eq!(Entry::parse(name), None, "{name}");
        }
    }

    #[test]
    fn tickets_round_trip_and_are_not_entries() {
        let t = Ticket {
            arrival_ms: 1_700_000_000_000,
            token: 0xdead_beef,
            expires_ms: 1_700_000_002_000,
        };
        assert_eq!(Ticket::parse(&t.encode()), Some(t));
        assert_eq!(Entry::parse(&t.encode()), None);
        for name in ["wait", "wait.1.2.3", "wait.01.00000000deadbeef.2", "free.1"] {
            assert_eq!(Ticket::parse(name), None, "{name}");
        }
        let later = Ticket {
            arrival_ms: t.arrival_ms + 1,
            token: 0,
            ..t
        };
        assert!(t.is_before(&later) && !later.is_before(&t));
    }
}
