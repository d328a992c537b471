//! Sizes on the command line and in policy files: a byte count, or one with a unit (`65536`,
//! `512K`, `64M`, `1G`; the units are powers of 1024).

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {why} (examples: 65536, 512K, 64M, 1G)")]
pub struct SizeError {
    input: String,
    why: &'static str,
}

/// Parse a size into bytes. The unit is `K`, `M` or `G` (also `KB`/`KiB` and so on, in any
/// case), each a power of 1024; no unit means bytes.
pub fn parse_bytes(input: &str) -> Result<usize, SizeError> {
    let err = |why| SizeError {
        input: input.to_owned(),
        why,
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(err("it must start with a whole number"));
    }
    let scale: usize = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(err("unknown size unit (use K, M or G)")),
    };
    let n: usize = digits.parse().map_err(|_| err("it is too large"))?;
    n.checked_mul(scale).ok_or_else(|| err("it is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_and_units() {
        assert_eq!(parse_bytes("65536"), Ok(65_536));
        assert_eq!(parse_bytes("512K"), Ok(512 << 10));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("64mib"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes(" 0 "), Ok(0));
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        for (bad, why) in [
            ("", "start with a whole number"),
            ("M", "start with a whole number"),
            ("-1M", "start with a whole number"),
            ("12X", "unknown size unit"),
            ("1.5M", "unknown size unit"),
            ("99999999999999999999999", "too large"),
            ("99999999999999999G", "too large"),
        ] {
            let err = parse_bytes(bad).unwrap_err().to_string();
            assert!(
                err.contains("invalid size") && err.contains(why),
                "{bad}: {err}"
            );
        }
    }
}
