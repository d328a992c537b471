//! Making text that came from a plugin or a lockdir safe to print on a terminal.
//!
//! Holder labels, lock names, plugin names and filesystem messages can carry anything a
//! plugin or a stray process put there: escape sequences (`ESC[31m`), newlines that forge a
//! line of output, bidirectional overrides and zero-width characters that make two names look
//! alike. Everything lockbydir prints that did not come from lockbydir itself goes through
//! [`escape`] (JSON output is escaped by serde and needs nothing more).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as it is: control characters (C0, DEL, C1), and
/// the invisible formatting characters that reorder or hide text (bidi embeddings, overrides
/// and isolates, zero-width spaces and joiners, the byte-order mark, the soft hyphen, and the
/// other format characters Unicode lists as default-ignorable).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'                   // soft hyphen
            | '\u{034F}'                 // combining grapheme joiner
            | '\u{061C}'                 // Arabic letter mark
            | '\u{115F}' | '\u{1160}'    // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'    // Mongolian variation selectors and vowel separator
            | '\u{200B}'..='\u{200F}'    // zero-width space, joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'    // line and paragraph separators
            | '\u{202A}'..='\u{202E}'    // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'    // word joiner, invisible operators, bidi isolates
            | '\u{3164}'                 // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'    // variation selectors
            | '\u{FEFF}'                 // byte-order mark, zero-width no-break space
            | '\u{FFA0}'                 // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}'    // interlinear annotation
            | '\u{E0000}'..='\u{E0FFF}' // tags and variation selectors supplement
        )
}

/// `text` with every [unsafe character](is_unsafe_char) written as a Rust-style escape
/// (`\n`, `\t`, `\u{1b}`), and backslashes doubled so that an escape cannot be forged.
/// Text with nothing to escape is returned as it is.
///
/// ```
/// use lockbydir::escape;
/// assert_eq!(escape("job-7"), "job-7");
/// assert_eq!(escape("a\x1b[31mb\nFAKE: ok"), "a\\u{1b}[31mb\\nFAKE: ok");
/// assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
/// ```
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_unsafe_char(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_unsafe_survives() {
        let hostile = "\x1b[31mred\x07\u{9b}2J\r\nFAKE: ok\u{200b}\u{202e}\u{2066}\u{feff}";
        let shown = escape(hostile);
        assert!(!shown.chars().any(is_unsafe_char), "{shown}");
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn plain_text_and_other_scripts_are_kept() {
        for text in ["job-7", "pid 42 on host.example", "café", "ロック", "δ"] {
            assert!(matches!(escape(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn an_escape_cannot_be_forged() {
        // A label that already contains a backslash escape is shown with the backslash
        // doubled, so it cannot pass for an escaped control character.
        assert_eq!(escape("a\\nb"), "a\\\\nb");
        assert_ne!(escape("a\\nb"), escape("a\nb"));
    }
}
