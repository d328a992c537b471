//! Durations on the command line (`30s`, `500ms`, `2m`, `1h`, `1.5s`; a bare number is
//! seconds; `inf` means forever) and in messages.

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (examples: 30s, 500ms, 2m, 1.5h, inf)")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parse a duration into milliseconds; `inf`, `infinite` and `forever` give `u64::MAX`.
pub fn parse_ms(input: &str) -> Result<u64, DurationError> {
    let err = |why| DurationError {
        input: input.to_owned(),
        why,
    };
    let s = input.trim();
    if matches!(s, "inf" | "infinite" | "forever") {
        return Ok(u64::MAX);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(err("it must start with a number"));
    }
    let value: f64 = number.parse().map_err(|_| err("the number is malformed"))?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "" | "s" | "sec" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(err("the unit must be ms, s, m, h or d")),
    };
    let ms = (value * scale).round();
    if !ms.is_finite() || ms >= u64::MAX as f64 {
        return Err(err("it is too large"));
    }
    Ok(ms as u64)
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
    fn refuses_nonsense_with_a_reason() {
        for bad in ["", "s", "-1s", "1x", "1..2s", "1e999h"] {
            let err = parse_ms(bad).unwrap_err().to_string();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
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
