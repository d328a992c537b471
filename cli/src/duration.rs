//! Durations on the command line and in policy files, and in messages.
//!
//! Parsing is `humantime`'s (`30s`, `500ms`, `2m`, `1h`, `1.5s`, `0.25s`, `1h 30m`, `2days`;
//! its units are ns, us, ms, s/sec, m/min, h, d, w, M (months) and y), with a thin layer on
//! top for what the command line has always taken and humantime does not: `inf`, `infinite`
//! and `forever` mean forever, and a bare number (`30`, `1.5`) is seconds, as flock(1)'s
//! `-w` takes it. Results are whole milliseconds, rounded to the nearest.

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (examples: 30s, 500ms, 2m, 1.5h, inf)")]
pub struct DurationError {
    input: String,
    why: String,
}

/// Parse a duration into milliseconds; `inf`, `infinite` and `forever` give `u64::MAX`.
pub fn parse_ms(input: &str) -> Result<u64, DurationError> {
    let err = |why: String| DurationError {
        input: input.to_owned(),
        why,
    };
    let s = input.trim();
    if matches!(s, "inf" | "infinite" | "forever") {
        return Ok(u64::MAX);
    }
    if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(err("it must start with a number".into()));
    }
    // A bare number is seconds; humantime wants a unit.
    let bare = s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let with_unit = match bare {
        true => format!("{s}s"),
        false => s.to_owned(),
    };
    let duration = humantime::parse_duration(&with_unit).map_err(|e| err(e.to_string()))?;
    let ms = (duration.as_nanos() + 500_000) / 1_000_000;
    match u64::try_from(ms) {
        Ok(ms) if ms < u64::MAX => Ok(ms),
        _ => Err(err("it is too large".into())),
    }
}

/// A short human form of a millisecond count: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn display_ms(ms: u64) -> String {
    match ms {
        u64::MAX => "forever".to_owned(),
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1_000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("30"), Ok(30_000));
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_ms("2m"), Ok(120_000));
        assert_eq!(parse_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_ms("0"), Ok(0));
        assert_eq!(parse_ms("inf"), Ok(u64::MAX));
    }

    #[test]
    fn takes_humantimes_forms_too() {
        assert_eq!(parse_ms("0.25s"), Ok(250));
        assert_eq!(parse_ms("1.5"), Ok(1_500));
        assert_eq!(parse_ms("1h 30m"), Ok(5_400_000));
        assert_eq!(parse_ms("2days"), Ok(172_800_000));
        assert_eq!(parse_ms("1500us"), Ok(2));
        assert_eq!(parse_ms("infinite"), Ok(u64::MAX));
        assert_eq!(parse_ms(" forever "), Ok(u64::MAX));
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        for (bad, why) in [
            ("", "must start with a number"),
            ("s", "must start with a number"),
            ("-1s", "must start with a number"),
            ("1x", "unknown time unit \"x\""),
            ("1..2s", "invalid character"),
            ("1e999h", "unknown time unit"),
            ("99999999999999999999d", "too large"),
            ("600000000y", "too large"),
        ] {
            let err = parse_ms(bad).unwrap_err().to_string();
            assert!(
                err.contains("invalid duration") && err.contains(why) && err.contains("examples"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(display_ms(850), "850ms");
        assert_eq!(display_ms(12_345), "12.3s");
        assert_eq!(display_ms(245_000), "4m05s");
        assert_eq!(display_ms(7_800_000), "2h10m");
    }
}
