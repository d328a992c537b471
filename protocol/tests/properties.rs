//! Property tests: name validation and state-entry encoding never panic, and never let a name
//! address anything outside the lock directory.

use lockbydir_protocol::entry::{Entry, Holder, LATEST_TIME_MS};
use lockbydir_protocol::lock::MAX_TIMEOUT_MS;
use lockbydir_protocol::{LockName, NameError};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_string_is_either_a_safe_name_or_refused_with_a_reason(name in "\\PC{0,8}|[./\\\\a-z\\x00\\n]{0,6}|.{190,210}") {
        match LockName::new(&name) {
            Ok(lock) => {
                let dir = lock.lockdir();
                prop_assert!(!dir.contains('/') && !dir.contains('\\') && !dir.contains('\0'));
                prop_assert!(name != "." && name != ".." && !name.is_empty());
                prop_assert!(dir.len() <= 255);
                prop_assert_eq!(LockName::from_lockdir(&dir), Some(lock));
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                let expected = name.is_empty()
                    || name == "."
                    || name == ".."
                    || name.len() > 200
                    || name.chars().any(|c| c == '/' || c == '\\' || c.is_control())
                    // Invisible characters that make two names look alike (bidi controls,
                    // zero-width characters, line separators, the byte-order mark).
                    || name.chars().any(|c| matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}'
                        | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
                        | '\u{2060}'..='\u{2069}' | '\u{FEFF}'));
                prop_assert!(expected, "refused {:?}: {:?}", name, e);
                if let NameError::TooLong(n) = e {
                    prop_assert_eq!(n, name.len());
                }
            }
        }
    }

    #[test]
    fn held_entries_round_trip_for_any_label(
        label in "\\PC{0,80}",
        fence in any::<u64>(),
        since_ms in 0..=LATEST_TIME_MS,
        deadline_ms in 0..=LATEST_TIME_MS,
        timeout_ms in 1..=MAX_TIMEOUT_MS,
        token in any::<u64>(),
        waiters in any::<bool>(),
        written_ms in any::<Option<u64>>(),
    ) {
        // Only a marked entry records when it was written.
        let written_ms = written_ms.filter(|_| waiters);
        let holder = Holder { label: label.clone(), fence, since_ms, deadline_ms, timeout_ms, token, waiters, written_ms };
        let name = Entry::Held(holder.clone()).encode();
        prop_assert!(name.len() <= 255 && !name.contains('/'));
        let Some(Entry::Held(parsed)) = Entry::parse(&name) else {
            return Err(TestCaseError::fail(format!("{name} did not parse")));
        };
        // Long labels are cut, at a character boundary, to a prefix.
        prop_assert!(label.starts_with(&parsed.label));
        prop_assert_eq!(Holder { label: parsed.label.clone(), ..holder }, parsed);
    }

    #[test]
    fn held_entries_with_times_or_timeouts_out_of_range_are_not_entries(
        since_ms in any::<u64>(),
        deadline_ms in any::<u64>(),
        timeout_ms in any::<u64>(),
    ) {
        let holder = Holder { label: "x".into(), fence: 1, since_ms, deadline_ms, timeout_ms, token: 1, waiters: false, written_ms: None };
        let in_range = since_ms <= LATEST_TIME_MS
            && deadline_ms <= LATEST_TIME_MS
            && (1..=MAX_TIMEOUT_MS).contains(&timeout_ms);
        prop_assert_eq!(Entry::parse(&Entry::Held(holder).encode()).is_some(), in_range);
    }

    #[test]
    fn parsing_arbitrary_entry_names_never_panics(name in "(free|held|held\\+[0-9]{0,3})?[.0-9a-f%A-Z-]{0,60}|\\PC{0,40}") {
        if let Some(entry) = Entry::parse(&name) {
            // Whatever parses encodes back to the same name (one name per state).
            prop_assert_eq!(entry.encode(), name);
        }
    }
}
