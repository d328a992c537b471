//! Checking recorded hold intervals: no two may overlap. Used by `demo` and the tests.

use std::fmt;

/// One recorded hold: who, with which fence, from `start` to `end` (ns since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Start of the hold, ns since the epoch.
    pub start: u128,
    /// End of the hold, ns since the epoch.
    pub end: u128,
    /// Fencing token of the acquisition.
    pub fence: u64,
    /// Who held it.
    pub who: String,
}

/// Two holds that overlapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// The earlier hold.
    pub first: Hold,
    /// The hold that began before the earlier one ended.
    pub second: Hold,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (fence {}) began {} ns before `{}` (fence {}) ended",
            self.second.who,
            self.second.fence,
            self.first.end - self.second.start,
            self.first.who,
            self.first.fence
        )
    }
}

/// What a successful check saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// How many holds were checked.
    pub holds: usize,
    /// The smallest gap between one hold's end and the next one's start, in ns.
    pub min_gap_ns: Option<u128>,
    /// Whether the fences rose strictly in time order.
    pub fences_increase: bool,
}

/// Parse `<start-ns> <end-ns> <fence> <who>` lines (other lines are skipped; `prefix`, if not
/// empty, must begin a line and is removed first).
pub fn parse(text: &str, prefix: &str) -> Result<Vec<Hold>, String> {
    let mut holds = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [start, end, fence, who @ ..] = fields.as_slice() else {
            return Err(format!("malformed hold record: {line:?}"));
        };
        let num = |s: &str| {
            s.parse::<u128>()
                .map_err(|_| format!("malformed hold record: {line:?}"))
        };
        holds.push(Hold {
            start: num(start)?,
            end: num(end)?,
            fence: num(fence)? as u64,
            who: who.join(" "),
        });
    }
    Ok(holds)
}

/// Check that no two holds overlap (and report whether fences grew in time order).
pub fn check(mut holds: Vec<Hold>) -> Result<Report, Box<Overlap>> {
    holds.sort_by_key(|h| (h.start, h.end));
    let mut min_gap_ns = None;
    let mut fences_increase = true;
    for pair in holds.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.start < a.end {
            return Err(Box::new(Overlap {
                first: a.clone(),
                second: b.clone(),
            }));
        }
        let gap = b.start - a.end;
        min_gap_ns = Some(min_gap_ns.map_or(gap, |g: u128| g.min(gap)));
        fences_increase &= b.fence > a.fence;
    }
    Ok(Report {
        holds: holds.len(),
        min_gap_ns,
        fences_increase,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(start: u128, end: u128, fence: u64) -> Hold {
        Hold {
            start,
            end,
            fence,
            who: format!("h{fence}"),
        }
    }

    #[test]
    fn disjoint_holds_pass_in_any_order() {
        let report = check(vec![hold(30, 40, 3), hold(0, 10, 1), hold(10, 20, 2)]).unwrap();
        assert_eq!(report.holds, 3);
        assert_eq!(report.min_gap_ns, Some(0));
        assert!(report.fences_increase);
    }

    #[test]
    fn an_overlap_is_caught_and_named() {
        let err = check(vec![hold(0, 10, 1), hold(9, 20, 2)]).unwrap_err();
        assert_eq!(err.first.fence, 1);
        assert!(err.to_string().contains("began 1 ns before"), "{err}");
    }

    #[test]
    fn parses_records_and_skips_other_lines() {
        let text = "slept 1 2 3 alice\ngave-up 5 bob carol\nslept 4 5 6 dave x\n";
        let holds = parse(text, "slept ").unwrap();
        assert_eq!(
            holds,
            vec![hold(1, 2, 3).with("alice"), hold(4, 5, 6).with("dave x")]
        );
        assert!(parse("slept 1 x 3 a", "slept ").is_err());
    }

    impl Hold {
        fn with(mut self, who: &str) -> Self {
            self.who = who.to_owned();
            self
        }
    }
}
