//! The picture: the distribution (CDF, log time axis) of handovers to a different contender
//! with N looping processes, one panel per directory, one line per kind: lockbydir with
//! wake-ups and polling, flock, seed-like 5 ms and 30 ms. Written by hand: a few lines and
//! text elements need no plotting library.

use std::fmt::Write;

use super::Report;
use super::contenders::Kind;

/// The kinds drawn, and their colours.
const SERIES: [(Kind, &str); 5] = [
    (Kind::PluginProcs, "#d62728"),
    (Kind::PluginProcsPolling, "#ff9896"),
    (Kind::FlockProcs, "#1f77b4"),
    (Kind::Seed5Procs, "#2ca02c"),
    (Kind::Seed30Procs, "#98df8a"),
];

const WIDTH: f64 = 760.0;
const PANEL: f64 = 500.0;
/// The plot area inside a panel: left, top, width, height.
const PLOT: (f64, f64, f64, f64) = (80.0, 55.0, 640.0, 320.0);
/// At most this many points per line.
const MAX_POINTS: usize = 400;

/// The SVG document.
pub fn render(r: &Report) -> String {
    let n = r.plan.peer_contenders;
    let height = PANEL * r.dirs.len().max(1) as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, d) in r.dirs.iter().enumerate() {
        let series: Vec<(Kind, &str, Vec<f64>)> = SERIES
            .iter()
            .map(|&(kind, colour)| {
                let row = d
                    .contended
                    .iter()
                    .find(|c| c.kind == kind && c.contenders == n);
                let mut xs = row.map_or_else(Vec::new, |c| c.figures.samples_us.clone());
                xs.retain(|x| x.is_finite());
                xs.sort_by(f64::total_cmp);
                (kind, colour, xs)
            })
            .collect();
        let title = [
            format!(
                "Handover to a different contender, {n} looping processes, hold {} µs",
                r.plan.hold_us
            ),
            format!("{} ({}), lockbydir bench {} mode", d.path, d.fs, r.mode),
        ];
        panel(&mut o, PANEL * i as f64, &title, &series);
    }
    o.push_str("</svg>\n");
    o
}

/// One panel at vertical offset `y0`.
fn panel(o: &mut String, y0: f64, title: &[String; 2], series: &[(Kind, &str, Vec<f64>)]) {
    let (left, top, w, h) = PLOT;
    let top = y0 + top;
    // The time axis: whole decades of µs around every sample.
    let all = series.iter().flat_map(|s| s.2.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
        (lo.min(x.max(0.1)), hi.max(x))
    });
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        )
    } else {
        (0.0, 3.0)
    };
    let x_of = |us: f64| left + w * ((us.max(0.1).log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
    let y_of = |share: f64| top + h * (1.0 - share);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text><text x="{}" y="{}">{}</text>"#,
        left,
        y0 + 20.0,
        escape(&title[0]),
        left,
        y0 + 38.0,
        escape(&title[1])
    );
    let _ = writeln!(
        o,
        r##"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##
    );
    // Grid and ticks.
    for decade in lo as i32..=hi as i32 {
        let x = x_of(10f64.powi(decade));
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            top + h,
            top + h + 16.0,
            decade_label(decade)
        );
    }
    for pct in [0, 25, 50, 75, 100] {
        let y = y_of(f64::from(pct) / 100.0);
        let _ = writeln!(
            o,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{pct} %</text>"##,
            left + w,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">handover to a different contender (log scale)</text>"#,
        left + w / 2.0,
        top + h + 36.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">share of handovers at most this long</text>"#,
        left - 50.0,
        top + h / 2.0
    );
    // The lines, and the legend below the plot.
    for (i, (kind, colour, xs)) in series.iter().enumerate() {
        let _ = writeln!(o, r#"<g class="series" data-kind="{}">"#, kind.name());
        if !xs.is_empty() {
            let step = xs.len().div_ceil(MAX_POINTS).max(1);
            let mut points = String::new();
            let n = xs.len() as f64;
            for (j, x) in xs.iter().enumerate() {
                if j % step == 0 || j + 1 == xs.len() {
                    let _ = write!(points, "{:.1},{:.1} ", x_of(*x), y_of((j + 1) as f64 / n));
                }
            }
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                points.trim_end()
            );
            if xs.len() < 3 {
                // Too few points for a line to show: mark them.
                for (j, x) in xs.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                        x_of(*x),
                        y_of((j + 1) as f64 / n)
                    );
                }
            }
        }
        let (lx, ly) = (
            left + (i % 2) as f64 * 330.0,
            top + h + 58.0 + (i / 2) as f64 * 18.0,
        );
        let label = match xs.len() {
            0 => format!("{}: no handovers", kind.name()),
            len => format!(
                "{}: median {}, n={len}",
                kind.name(),
                duration(xs[(len - 1) / 2])
            ),
        };
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            escape(&label)
        );
        let _ = writeln!(o, "</g>");
    }
}

/// `100 ns`, `1 µs`, `10 ms`, `1 s` for 10^decade µs.
fn decade_label(decade: i32) -> String {
    let (value, unit) = unit(10f64.powi(decade));
    format!("{value:.0} {unit}")
}

/// `4.7 µs`, `470 µs`, `1.25 ms`.
fn duration(us: f64) -> String {
    let (value, unit) = unit(us);
    let decimals = if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.decimals$} {unit}")
}

/// A duration in µs as a value and the unit that suits it.
fn unit(us: f64) -> (f64, &'static str) {
    if us < 1.0 {
        (us * 1e3, "ns")
    } else if us < 1e3 {
        (us, "µs")
    } else if us < 1e6 {
        (us / 1e3, "ms")
    } else {
        (us / 1e6, "s")
    }
}

/// Text as XML character data.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
