//! The targets, judged from the figures of one run (every comparison is a ratio or a
//! figure measured in that same run).

use serde::Serialize;

use super::DirReport;
use super::startup::Startup;

/// Waiter CPU counted as low: at most this share of a core per waiting contender (%).
pub const LOW_WAITER_CPU_PCT: f64 = 5.0;

/// One target, met or missed.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is measured.
    pub target: String,
    /// Where (directory and contender kind), if it depends on that.
    pub context: String,
    pub value: f64,
    pub limit: f64,
    pub unit: &'static str,
    /// True if the value must be at least the limit (else at most).
    pub at_least: bool,
    pub met: bool,
}

impl Target {
    fn new(target: &str, context: String, value: f64, limit: f64, unit: &'static str) -> Self {
        Self::judge(target, context, value, limit, unit, false)
    }

    fn at_least(target: &str, context: String, value: f64, limit: f64, unit: &'static str) -> Self {
        Self::judge(target, context, value, limit, unit, true)
    }

    fn judge(
        target: &str,
        context: String,
        value: f64,
        limit: f64,
        unit: &'static str,
        at_least: bool,
    ) -> Self {
        let met = if at_least {
            value >= limit
        } else {
            value <= limit
        };
        Target {
            target: target.into(),
            context,
            value,
            limit,
            unit,
            at_least,
            met,
        }
    }

    /// How far off a missed target is: `3.2x the limit`, or `17 short`.
    pub fn miss(&self) -> String {
        if self.met {
            String::new()
        } else if self.value.is_nan() {
            "no value".into()
        } else if self.at_least {
            format!("{:.1} {} short", self.limit - self.value, self.unit)
        } else {
            format!("{:.2}x the limit", self.value / self.limit)
        }
    }
}

/// Judge every target.
pub fn judge(dirs: &[DirReport], startup: &Startup) -> Vec<Target> {
    let mut out = Vec::new();
    for d in dirs {
        let u = &d.uncontended;
        let at = format!("{} ({})", d.path, d.fs);
        out.push(Target::new(
            "plugin->component acquire+release / native protocol",
            at.clone(),
            u.plugin_over_protocol,
            1.3,
            "x",
        ));
        out.push(Target::new(
            "plugin->component acquire+release / bare mkdir+rmdir",
            at.clone(),
            u.plugin_over_mkdir_rmdir,
            3.0,
            "x",
        ));
    }
    for d in dirs {
        for row in d.contended.iter().filter(|r| r.contenders == 8) {
            if !row.kind.is_plugin() {
                continue;
            }
            let at = format!("{} ({}), {}", d.path, d.fs, row.kind.name());
            let f = &row.figures;
            if d.fs == "tmpfs" {
                out.push(Target::new(
                    "median handover to a different contender, 8 contenders",
                    at.clone(),
                    f.handover_median_us / 1e3,
                    0.1,
                    "ms",
                ));
                let waiting = d
                    .waiting
                    .iter()
                    .find(|w| w.contenders == 8 && w.kind == row.kind);
                if let Some(w) = waiting {
                    out.push(Target::new(
                        "waiter CPU, 8 waiting (low: % of a core per waiter)",
                        at.clone(),
                        w.waiter_cpu_pct,
                        LOW_WAITER_CPU_PCT,
                        "%",
                    ));
                }
            }
            out.push(Target::at_least(
                "handovers to a different contender, 8 looping",
                at.clone(),
                f.to_other_pct,
                80.0,
                "%",
            ));
            out.push(Target::new(
                "longest wait of any contender, 8 looping (2*N*hold)",
                at,
                f.longest_wait_ms,
                f.wait_bound_ms,
                "ms",
            ));
        }
    }
    out.push(Target::new(
        "start from the on-disk compiled cache",
        String::new(),
        startup.start_from_cache_ms,
        5.0,
        "ms",
    ));
    out.push(Target::new(
        "one more plugin instance",
        String::new(),
        startup.one_more_plugin_ms,
        1.0,
        "ms",
    ));
    out
}
