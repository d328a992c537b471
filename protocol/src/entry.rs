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
//! - `held+<written>.<same fields>`: marked, and `<written>` is the lockdir's mtime the
//!   marker read while the unmarked entry was still in place: the filesystem's time of the
//!   rename that wrote this deadline, which the mark's own rename overwrote (see
//!   [`Holder::written_ms`]).
//!
//! The waiters' *tickets* ([`Ticket`]), `wait.<arrival>.<token>.<expires>`, live in a sibling
//! directory `<name>.queue`, not in the lockdir: they are not state, they only order the
//! waiters, and keeping them out of the lockdir keeps its mtime the time of the last state
//! change (which the takeover rule reads).
//!
//! A name is a state entry only if it is exactly the name the protocol would write for the
//! state it describes ([`Entry::parse`] re-encodes what it read and compares): numbers in
//! canonical decimal, the token in lower-case hex, the label encoded the one way
//! [`encode_label`] encodes it, a timeout of at most [`MAX_TIMEOUT_MS`] and times no later
//! than [`LATEST_TIME_MS`]. Every rename names the exact entry it replaces, so a name that
//! parsed but re-encoded to another name could never be renamed: a lock in that state would
//! wait forever. Other names are not state: next to a state entry they are ignored (a
//! filesystem may add its own files, such as NFS's `.nfsXXXX`); a lockdir with names but no
//! state entry is corrupt (see [`crate::lock`]).

use crate::limits::MAX_TIMEOUT_MS;

/// The latest time an entry may record (ms since the epoch): the end of the year 9999. No
/// working clock reads later, so an entry with a later deadline could never expire.
pub const LATEST_TIME_MS: u64 = 253_402_300_799_999;

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
    /// Only in a marked entry, as its marker recorded it: the filesystem's time (the lockdir's
    /// mtime, ms since the epoch) of the rename that wrote this entry's deadline. The mark
    /// renamed the entry and so moved the lockdir's mtime; the takeover rule reads this
    /// instead. `None` in an unmarked entry, in one marked without timestamps, and after the
    /// holder refreshed a marked entry (then the lockdir's mtime is right again).
    pub written_ms: Option<u64>,
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
                match (h.waiters, h.written_ms) {
                    (false, _) => "held".to_owned(),
                    (true, None) => "held+".to_owned(),
                    (true, Some(written)) => format!("held+{written}"),
                },
                h.fence,
                h.since_ms,
                h.deadline_ms,
                h.timeout_ms,
                h.token,
                encode_label(&h.label)
            ),
        }
    }

    /// Parse an entry name; `None` if it is not a state entry: it does not parse, it is not
    /// the canonical name of what it describes, or its times or timeout are out of range
    /// (see the module documentation).
    pub fn parse(name: &str) -> Option<Entry> {
        Self::parse_fields(name)
            .filter(|e| e.encode() == name)
            .filter(Entry::in_range)
    }

    /// Whether the entry's times and timeout are ones the protocol can write.
    fn in_range(&self) -> bool {
        match self {
            Entry::Free { .. } => true,
            Entry::Held(h) => {
                (1..=MAX_TIMEOUT_MS).contains(&h.timeout_ms)
                    && h.since_ms <= LATEST_TIME_MS
                    && h.deadline_ms <= LATEST_TIME_MS
            }
        }
    }

    /// The fields of an entry name, canonical or not.
    fn parse_fields(name: &str) -> Option<Entry> {
        let mut parts = name.split('.');
        match parts.next()? {
            kind @ ("free" | "free+") => {
                let fence = parse_u64(parts.next()?)?;
                parts.next().is_none().then_some(Entry::Free {
                    fence,
                    waiters: kind == "free+",
                })
            }
            kind => {
                // `held`, `held+`, or `held+<written>`.
                let (waiters, written_ms) = match kind.strip_prefix("held")? {
                    "" => (false, None),
                    "+" => (true, None),
                    marked => (true, Some(parse_u64(marked.strip_prefix('+')?)?)),
                };
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
                    waiters,
                    written_ms,
                }))
            }
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
            written_ms: None,
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
            Entry::Held(Holder {
                waiters: true,
                written_ms: Some(1_700_000_000_123),
                ..holder("x")
            }),
            Entry::Held(Holder {
                waiters: true,
                // The longest name a canonical entry can have.
                written_ms: Some(u64::MAX),
                fence: u64::MAX,
                since_ms: LATEST_TIME_MS,
                deadline_ms: LATEST_TIME_MS,
                timeout_ms: MAX_TIMEOUT_MS,
                ..holder(&"é".repeat(500))
            }),
        ] {
            let name = entry.encode();
            assert!(!name.contains('/') && name.len() <= 255, "{name}");
            let parsed = Entry::parse(&name).expect("parses");
            assert_eq!(parsed.encode(), name);
            if let (Entry::Held(p), Entry::Held(h)) = (&parsed, &entry)
                && h.label.len() > MAX_ENCODED_LABEL
            {
                assert_eq!(
                    Entry::Held(Holder {
                        label: p.label.clone(),
                        ..h.clone()
                    }),
                    parsed
                );
            } else {
                assert_eq!(parsed, entry);
            }
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
            "held+01.1.2.3.4.00000000deadbeef.x",
            "held+x.1.2.3.4.00000000deadbeef.x",
            "held++.1.2.3.4.00000000deadbeef.x",
            "held1.1.2.3.4.00000000deadbeef.x",
            "heldx.1.2.3.4.00000000deadbeef.x",
            "wait.1.00000000deadbeef.2",
            "",
            // Parse, but are not the canonical names of what they describe.
            "held.1.2.3.4.00000000DEADBEEF.x",
            "held.1.2.3.4.00000000deadbeef.%78",
            "held.1.2.3.4.00000000deadbeef.%c3%a9",
            "free.18446744073709551616",
            // Out of range: a deadline no clock reaches, a timeout of 0 or above the maximum.
            "held.1.2.18446744073709551615.4.00000000deadbeef.x",
            "held.1.2.253402300800000.4.00000000deadbeef.x",
            "held.1.2.3.0.00000000deadbeef.x",
            "held.1.2.3.316224000001.00000000deadbeef.x",
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
