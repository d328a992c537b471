//! The targets, judged from the figures of one run: every comparison is a ratio or a figure measured in that same run. Each target
//! names the table row it belongs to, so the tables can show it there too.

use serde::Serialize;

use lockbydir_protocol::Fairness;

use super::DirReport;
use super::contenders::Kind;
use super::startup::Startup;

/// How many of the hammering's contenders must get in (190 of 200).
const HAMMER_GOT_IN_SHARE: f64 = 0.95;

/// One target, met or missed.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is measured.
    pub target: String,
    /// Where (directory and contender kind), if it depends on that.
    pub context: String,
    /// The table the figure is in (`uncontended`, `contended`, `waiting`, `after_hold`,
    /// `hammer`, `startup`), and its row: directory path, kind, contender count.
    pub table: &'static str,
    pub dir: String,
    pub kind: Option<Kind>,
    pub contenders: Option<usize>,
    /// The figure the row shows, in a word (`median`, `p99`, `CPU`, ...).
    pub figure: &'static str,
    pub value: f64,
    pub limit: f64,
    pub unit: &'static str,
    /// How the value must compare to the limit: `<=`, `>=` or `>`.
    pub op: &'static str,
    pub met: bool,
    /// value / limit.
    pub ratio: f64,
}

/// Which row a target belongs to.
#[derive(Clone)]
struct Row {
    table: &'static str,
    dir: String,
    context: String,
    kind: Option<Kind>,
    contenders: Option<usize>,
}

impl Row {
    fn target(
        &self,
        target: &str,
        figure: &'static str,
        (value, op, limit): (f64, &'static str, f64),
        unit: &'static str,
    ) -> Target {
        let met = match op {
            "<=" => value <= limit,
            ">=" => value >= limit,
            _ => value > limit,
        };
        Target {
            target: target.into(),
            context: self.context.clone(),
            table: self.table,
            dir: self.dir.clone(),
            kind: self.kind,
            contenders: self.contenders,
            figure,
            value,
            limit,
            unit,
            op,
            met,
            ratio: value / limit,
        }
    }
}

impl Target {
    /// `met` or `MISSED`, and value / limit: `MISSED (9.40x)`.
    pub fn verdict(&self) -> String {
        let word = if self.met { "met" } else { "MISSED" };
        if self.value.is_nan() {
            format!("{word} (no value)")
        } else {
            format!("{word} ({:.2}x)", self.ratio)
        }
    }

    /// The limit as `<= 0.50 ms`.
    pub fn limit_text(&self) -> String {
        let limit = num(self.limit, self.decimals());
        format!("{} {limit} {}", self.op, self.unit)
            .trim_end()
            .to_owned()
    }

    /// Digits after the point for this target's values.
    pub fn decimals(&self) -> usize {
        match self.unit {
            "%" | "" => 1,
            _ => 2,
        }
    }
}

fn num(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}")
}

/// The targets of one table row, for its last cell: `median <= 0.05 ms: MISSED (9.40x)`.
pub fn for_row(
    targets: &[Target],
    table: &str,
    dir: &str,
    kind: Option<Kind>,
    contenders: Option<usize>,
) -> String {
    let cells: Vec<String> = targets
        .iter()
        .filter(|t| {
            t.table == table && t.dir == dir && t.kind == kind && t.contenders == contenders
        })
        .map(|t| format!("{} {}: {}", t.figure, t.limit_text(), t.verdict()))
        .collect();
    cells.join("; ")
}

/// Judge every target; `n` is the contender count the contention targets are judged at (8
/// in the quick and full plans).
pub fn judge(dirs: &[DirReport], startup: Option<&Startup>, n: usize) -> Vec<Target> {
    let mut out = Vec::new();
    for d in dirs {
        uncontended(&mut out, d);
    }
    for d in dirs {
        contended(&mut out, d, n);
        waiting(&mut out, d);
        hammer(&mut out, d);
    }
    let Some(startup) = startup else {
        return out;
    };
    let row = Row {
        table: "startup",
        dir: String::new(),
        context: String::new(),
        kind: None,
        contenders: None,
    };
    out.push(row.target(
        "start from the on-disk compiled cache",
        "from cache",
        (startup.start_from_cache_ms, "<=", 5.0),
        "ms",
    ));
    out.push(row.target(
        "one more plugin instance",
        "one more plugin",
        (startup.one_more_plugin_ms, "<=", 1.0),
        "ms",
    ));
    out
}

fn row(table: &'static str, d: &DirReport, kind: Option<Kind>, n: Option<usize>) -> Row {
    let mut context = format!("{} ({})", d.path, d.fs);
    if let Some(kind) = kind {
        context.push_str(&format!(", {}", kind.name()));
    }
    if let Some(n) = n {
        context.push_str(&format!(" x{n}"));
    }
    Row {
        table,
        dir: d.path.clone(),
        context,
        kind,
        contenders: n,
    }
}

fn uncontended(out: &mut Vec<Target>, d: &DirReport) {
    let Some(u) = &d.uncontended else {
        return;
    };
    let r = row("uncontended", d, None, None);
    out.push(r.target(
        "plugin->component acquire+release / native protocol",
        "plugin / protocol",
        (u.plugin_over_protocol, "<=", 1.3),
        "x",
    ));
    out.push(r.target(
        "plugin->component acquire+release / native protocol, polling fallback",
        "plugin polling / protocol",
        (u.plugin_polling_over_protocol, "<=", 1.3),
        "x",
    ));
    out.push(r.target(
        "plugin->component acquire+release / bare mkdir+rmdir",
        "plugin / mkdir+rmdir",
        (u.plugin_over_mkdir_rmdir, "<=", 3.0),
        "x",
    ));
}

/// The fairness a kind's locks use: the plugins and the native threads the protocol's
/// default, the native processes the one they name.
fn fairness(kind: Kind) -> Fairness {
    match kind {
        Kind::ProtocolProcsFifo => Fairness::Fifo,
        Kind::ProtocolProcsBounded => Fairness::Bounded,
        _ => Fairness::default(),
    }
}

/// `n` looping contenders: handover, throughput against flock, longest wait (bounded or
/// FIFO, as the kind's locks are), growth from `n` to 32 contenders, system calls.
fn contended(out: &mut Vec<Target>, d: &DirReport, n: usize) {
    let flock = d
        .contended
        .iter()
        .find(|c| c.contenders == n && c.kind == Kind::FlockProcs)
        .map_or(f64::NAN, |c| c.figures.throughput_per_s);
    let find = |kind: Kind, count: usize| {
        d.contended
            .iter()
            .find(|c| c.kind == kind && c.contenders == count)
    };
    for c in d.contended.iter().filter(|c| c.contenders == n) {
        let ours = c.kind.is_plugin()
            || matches!(c.kind, Kind::ProtocolProcsFifo | Kind::ProtocolProcsBounded);
        if !ours {
            continue;
        }
        let fifo = fairness(c.kind) == Fairness::Fifo;
        let f = &c.figures;
        let r = row("contended", d, Some(c.kind), Some(c.contenders));
        if c.kind.is_process() {
            out.push(r.target(
                "median handover to a different contender, N looping processes",
                "median",
                (
                    f.handover_median_us / 1e3,
                    "<=",
                    if fifo { 0.1 } else { 0.05 },
                ),
                "ms",
            ));
            out.push(r.target(
                "acquisitions/s of N looping processes, share of flock's (flock-procs)",
                "acq/s vs flock",
                (
                    100.0 * f.throughput_per_s / flock,
                    ">=",
                    if fifo { 50.0 } else { 70.0 },
                ),
                "%",
            ));
            // Growth: the handover with 32 contenders against the one with n.
            if let Some(c32) = find(c.kind, 32).filter(|_| n != 32) {
                out.push(r.target(
                    "median handover at 32 looping processes / at N",
                    "median x32 / xN",
                    (
                        c32.figures.handover_median_us / f.handover_median_us,
                        "<=",
                        1.3,
                    ),
                    "x",
                ));
            }
            for count in [n, 32] {
                if let Some(s) = find(c.kind, count).and_then(|c| c.syscalls_per_acquisition) {
                    out.push(r.target(
                        &format!("system calls per acquisition, {count} looping processes"),
                        if count == n {
                            "syscalls/acq"
                        } else {
                            "syscalls/acq x32"
                        },
                        (s, "<=", 20.0),
                        "",
                    ));
                }
            }
        }
        let (bound, what) = match fifo {
            true => (f.wait_bound_ms, "2*N*hold"),
            false => (5.0, "bounded fairness: 5 ms"),
        };
        out.push(r.target(
            &format!("longest wait of any contender, N looping ({what})"),
            "longest wait",
            (f.longest_wait_ms, "<=", bound),
            "ms",
        ));
    }
    // The native API against plugins, N threads each.
    if let (Some(native), Some(plugin)) =
        (find(Kind::ProtocolThreads, n), find(Kind::PluginThreads, n))
    {
        let r = row("contended", d, Some(Kind::ProtocolThreads), Some(n));
        out.push(r.target(
            "native protocol's median handover / plugins', N threads",
            "median vs plugins",
            (
                native.figures.handover_median_us / plugin.figures.handover_median_us,
                "<=",
                1.5,
            ),
            "x",
        ));
    }
}

/// Waiter CPU of every lockbydir row; the last of 8 waiters after a hold.
fn waiting(out: &mut Vec<Target>, d: &DirReport) {
    for w in d.waiting.iter().filter(|w| w.kind.is_plugin()) {
        let r = row("waiting", d, Some(w.kind), Some(w.contenders));
        out.push(r.target(
            "waiter CPU behind a held lock, per waiting process or plugin",
            "CPU",
            (w.waiter_cpu_pct, "<=", 0.5),
            "%",
        ));
    }
    for w in d.after_hold.iter().filter(|w| w.kind.is_plugin()) {
        let r = row("after_hold", d, Some(w.kind), Some(w.contenders));
        // Each of them holds for the hold time; 50 µs per handover on top.
        let bound_ms = w.contenders as f64 * (w.hold_us as f64 + 50.0) / 1e3;
        out.push(r.target(
            "last of the waiters holds the lock, after the release (N*(hold+50 µs))",
            "last",
            (w.last_after_release_us / 1e3, "<=", bound_ms),
            "ms",
        ));
    }
}

/// The seed's hammering: how many got in, against the contenders and the seed-like 5 ms poll.
fn hammer(out: &mut Vec<Target>, d: &DirReport) {
    let seed5 = d
        .hammer
        .iter()
        .find(|h| h.kind == Kind::Seed5Procs)
        .map_or(f64::NAN, |h| h.got_in);
    for h in d.hammer.iter().filter(|h| h.kind.is_plugin()) {
        let r = row("hammer", d, Some(h.kind), Some(h.contenders));
        out.push(r.target(
            "hammering: got in (95 % of the contenders)",
            "got in",
            (h.got_in, ">=", HAMMER_GOT_IN_SHARE * h.contenders as f64),
            "",
        ));
        out.push(r.target(
            "hammering: got in, more than the seed-like 5 ms poll",
            "got in vs seed 5 ms",
            (h.got_in, ">", seed5),
            "",
        ));
    }
}
