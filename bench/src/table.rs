//! The report as Markdown tables (readable in a terminal, pasteable into docs).

use std::fmt::Write;

use super::Report;
use super::targets::for_row;

/// A duration given in ns, in the unit that suits it.
fn ns(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x < 1e3 {
        format!("{x:.0} ns")
    } else if x < 1e6 {
        format!("{:.1} µs", x / 1e3)
    } else if x < 1e9 {
        format!("{:.2} ms", x / 1e6)
    } else {
        format!("{:.2} s", x / 1e9)
    }
}

fn num(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.decimals$}")
    }
}

fn row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn header(out: &mut String, cells: &[&str]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(cells.len()));
}

/// Render the whole report.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "lockbydir bench ({} mode): {} CPUs, kernel {}, load average {} at start, {} at end.\n",
        r.mode, r.machine.cpus, r.machine.kernel, r.machine.loadavg_start, r.machine.loadavg_end
    );
    if r.dirs.iter().any(|d| d.uncontended.is_some()) {
        uncontended(&mut o, r);
    }
    if r.dirs.iter().any(|d| !d.contended.is_empty()) {
        contended(&mut o, r);
    }
    if r.dirs.iter().any(|d| !d.waiting.is_empty()) {
        waiting(&mut o, r);
    }
    if r.dirs.iter().any(|d| !d.after_hold.is_empty()) {
        after_hold(&mut o, r);
    }
    if let Some(s) = &r.startup {
        startup(&mut o, s);
    }
    if r.dirs.iter().any(|d| !d.hammer.is_empty()) {
        hammer(&mut o, r);
    }
    async_waits(&mut o, r);
    etcd(&mut o, r);
    targets(&mut o, r);
    o
}

fn uncontended(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "### Uncontended acquire + release, per pair (median of {} runs; ratios: median of the per-run ratios)\n",
        r.dirs
            .iter()
            .find_map(|d| d.uncontended.as_ref())
            .map_or(0, |u| u.runs)
    );
    header(
        o,
        &[
            "directory",
            "mkdir+rmdir (floor; the seed's lock)",
            "flock",
            "protocol, native",
            "component from host",
            "plugin->host->component",
            "same, polling fallback",
            "plugin / protocol",
            "polling plugin / protocol",
            "plugin / mkdir+rmdir",
            "component / protocol",
            "protocol / mkdir+rmdir",
            "targets",
        ],
    );
    for d in &r.dirs {
        let Some(u) = &d.uncontended else {
            continue;
        };
        row(
            o,
            &[
                format!("{} ({})", d.path, d.fs),
                ns(u.mkdir_rmdir_ns),
                ns(u.flock_ns),
                ns(u.protocol_ns),
                ns(u.service_ns),
                ns(u.plugin_ns),
                ns(u.plugin_polling_ns),
                format!("{}x", num(u.plugin_over_protocol, 2)),
                format!("{}x", num(u.plugin_polling_over_protocol, 2)),
                format!("{}x", num(u.plugin_over_mkdir_rmdir, 2)),
                format!("{}x", num(u.service_over_protocol, 2)),
                format!("{}x", num(u.protocol_over_mkdir_rmdir, 2)),
                for_row(&r.targets, "uncontended", &d.path, None, None),
            ],
        );
    }
    o.push('\n');
}

fn contended(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "### Contended handover: N contenders loop acquire, hold {} µs (busy), release; {} ms window, median of {} run(s)\n",
        r.plan.hold_us, r.plan.window_ms, r.plan.contended_runs
    );
    let _ = writeln!(
        o,
        "handover: from a holder starting to release to a different contender holding. to other: share of the passes (while someone else waited) that went to a different contender; the rest is barging. CPU/acq: all contenders' CPU time per acquisition, the 100 µs busy hold included. syscalls/acq: all system calls of the contender processes per acquisition, counted in one more run under `strace -c -f` attached just before the go (processes only). protocol-procs-fifo/-bounded: the protocol natively (the guard API's lock) in processes, first come first served or with bounded fairness; plugins use the default fairness. -polling: lockbydir with LOCKBYDIR_NO_WAKEUPS=1. seed-Xms: mkdir to take, rmdir to let go, mkdir again every X ms while busy. The peers (polling, seed) are measured with {} contenders.\n",
        r.plan.peer_contenders
    );
    header(
        o,
        &[
            "directory",
            "contenders",
            "N",
            "handover median",
            "handover p99",
            "to other",
            "acquisitions min-max (Jain)",
            "longest wait (2*N*hold)",
            "acq/s",
            "CPU/acq",
            "syscalls/acq",
            "targets",
        ],
    );
    for d in &r.dirs {
        for c in &d.contended {
            let f = &c.figures;
            row(
                o,
                &[
                    d.fs.clone(),
                    c.kind.name().into(),
                    c.contenders.to_string(),
                    ns(f.handover_median_us * 1e3),
                    ns(f.handover_p99_us * 1e3),
                    format!("{}%", num(f.to_other_pct, 1)),
                    format!(
                        "{}-{} ({})",
                        num(f.acquisitions_min, 0),
                        num(f.acquisitions_max, 0),
                        num(f.jain, 2)
                    ),
                    format!(
                        "{} ({})",
                        ns(f.longest_wait_ms * 1e6),
                        ns(f.wait_bound_ms * 1e6)
                    ),
                    num(f.throughput_per_s, 0),
                    ns(f.cpu_us_per_acquisition * 1e3),
                    c.syscalls_per_acquisition.map_or("-".into(), |s| num(s, 1)),
                    for_row(
                        &r.targets,
                        "contended",
                        &d.path,
                        Some(c.kind),
                        Some(c.contenders),
                    ),
                ],
            );
        }
    }
    o.push('\n');
}

fn waiting(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "### Waiting CPU: the benchmark holds the lock {} ms while N contenders wait; median of {} run(s)\n",
        r.plan.waiting_cpu_ms, r.plan.waiting_cpu_runs
    );
    let _ = writeln!(
        o,
        "waiter CPU: each waiter's CPU time from the go to just before the release, per second (% of one core; threads: /proc/self/task/TID/schedstat, processes: the schedstat of each of their threads).\n"
    );
    header(
        o,
        &["directory", "contenders", "N", "waiter CPU", "targets"],
    );
    for d in &r.dirs {
        for w in &d.waiting {
            row(
                o,
                &[
                    d.fs.clone(),
                    w.kind.name().into(),
                    w.contenders.to_string(),
                    format!("{}%", num(w.waiter_cpu_pct, 2)),
                    for_row(
                        &r.targets,
                        "waiting",
                        &d.path,
                        Some(w.kind),
                        Some(w.contenders),
                    ),
                ],
            );
        }
    }
    o.push('\n');
}

fn after_hold(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "### After a hold: the benchmark holds the lock {} ms while N contenders wait, then lets go; median of {} run(s)\n",
        r.plan.after_hold_ms, r.plan.contended_runs
    );
    let _ = writeln!(
        o,
        "first/last: from the release to the first/last waiter holding the lock (each holds it once, {} µs busy).\n",
        r.plan.hold_us
    );
    header(
        o,
        &[
            "directory",
            "contenders",
            "N",
            "first after release",
            "last after release",
            "targets",
        ],
    );
    for d in &r.dirs {
        for w in &d.after_hold {
            row(
                o,
                &[
                    d.fs.clone(),
                    w.kind.name().into(),
                    w.contenders.to_string(),
                    ns(w.first_after_release_us * 1e3),
                    ns(w.last_after_release_us * 1e3),
                    for_row(
                        &r.targets,
                        "after_hold",
                        &d.path,
                        Some(w.kind),
                        Some(w.contenders),
                    ),
                ],
            );
        }
    }
    o.push('\n');
}

fn startup(o: &mut String, s: &super::startup::Startup) {
    let _ = writeln!(
        o,
        "### Start-up (median of {} runs; compile: {} run(s); memory: {} idle plugins)\n",
        s.runs, s.compile_runs, s.idle_plugins
    );
    header(
        o,
        &[
            "compile lock component (no cache)",
            "start from compiled cache",
            "one more lock component",
            "one more plugin",
            "whole `lockbydir run` process",
            "RSS per idle plugin",
        ],
    );
    row(
        o,
        &[
            ns(s.compile_no_cache_ms * 1e6),
            ns(s.start_from_cache_ms * 1e6),
            ns(s.lock_service_ms * 1e6),
            ns(s.one_more_plugin_ms * 1e6),
            ns(s.process_run_ms * 1e6),
            format!("{} KiB", num(s.rss_per_idle_plugin_kib, 0)),
        ],
    );
    o.push('\n');
}

fn async_waits(o: &mut String, r: &Report) {
    if r.async_waits.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "### WASI 0.3 plugin tasks waiting at once (`lockbydir:waiting`): one `lockbydir run` process, first directory\n"
    );
    let _ = writeln!(
        o,
        "Each task waits on a handle of its own for a lock the benchmark holds; threads: the most the process had while they waited (/proc). CPU while waiting: the process's, over {:.1} s with every task queued (each renews its ticket about once a second), as a share of one core. Drained: from the release to the process's end, every task having held the lock once.\n",
        r.plan.async_wait_ms as f64 / 1e3
    );
    header(
        o,
        &[
            "tasks",
            "tickets at once",
            "threads",
            "all queued after",
            "CPU while waiting",
            "drained",
        ],
    );
    for a in &r.async_waits {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} ms | {:.1} % | {:.0} ms |",
            a.tasks, a.most_tickets, a.most_threads, a.queued_ms, a.waiting_cpu_pct, a.drained_ms
        );
    }
    let _ = writeln!(o);
}

fn hammer(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "### Massive hammering (the seed's demo): one try each, hold asleep; median of {} run(s)\n",
        r.plan.hammer_runs
    );
    let _ = writeln!(
        o,
        "lockbydir: plugin instances on threads; flock and seed-like: one process each. held: the share of the time from the go to the last contender's end that the lock was held; hold median: from holding to starting to release (a sleep of the hold's length).\n"
    );
    header(
        o,
        &[
            "directory",
            "kind",
            "contenders",
            "hold",
            "patience",
            "got in",
            "gave up",
            "handover median",
            "handover p99",
            "longest wait",
            "elapsed",
            "held",
            "hold median",
            "overlaps",
            "targets",
        ],
    );
    for d in &r.dirs {
        for h in &d.hammer {
            row(
                o,
                &[
                    d.fs.clone(),
                    h.kind.name().into(),
                    h.contenders.to_string(),
                    format!("{} ms", h.hold_ms),
                    format!("{} ms", h.patience_ms),
                    num(h.got_in, 0),
                    num(h.gave_up, 0),
                    ns(h.handover_median_ms * 1e6),
                    ns(h.handover_p99_ms * 1e6),
                    ns(h.longest_wait_ms * 1e6),
                    format!("{} s", num(h.elapsed_s, 2)),
                    format!("{}%", num(h.held_pct, 1)),
                    ns(h.hold_median_ms * 1e6),
                    h.overlaps.to_string(),
                    for_row(
                        &r.targets,
                        "hammer",
                        &d.path,
                        Some(h.kind),
                        Some(h.contenders),
                    ),
                ],
            );
        }
    }
    o.push('\n');
}

fn etcd(o: &mut String, r: &Report) {
    let e = &r.etcd;
    if e.status == super::etcd::NOT_MEASURED {
        return;
    }
    let _ = writeln!(o, "### The etcd backend, next to lockdir and flock\n");
    let Some(u) = &e.uncontended else {
        let _ = writeln!(o, "{}\n", e.status);
        return;
    };
    let _ = writeln!(
        o,
        "Server: {}. Uncontended acquire + release, median of {} run(s) ({} etcd pairs each); ratios within runs.\n",
        e.server, u.runs, u.ops
    );
    header(
        o,
        &["lock", "per acquire + release", "etcd plugin over this"],
    );
    for (name, value, ratio) in [
        ("flock", u.flock_ns, u.etcd_plugin_over_flock),
        (
            "plugin, lockdir backend",
            u.lockdir_plugin_ns,
            u.etcd_plugin_over_lockdir_plugin,
        ),
        ("Rust API (Locks), etcd backend", u.etcd_api_ns, f64::NAN),
        ("plugin, etcd backend", u.etcd_plugin_ns, f64::NAN),
    ] {
        let ratio = if ratio.is_nan() {
            "-".into()
        } else {
            format!("{}x", num(ratio, 1))
        };
        row(o, &[name.into(), ns(value), ratio]);
    }
    let _ = writeln!(
        o,
        "\nHandover between looping processes (hold {} µs busy, {} ms window), interleaved runs:\n",
        r.plan.hold_us, r.plan.window_ms
    );
    header(
        o,
        &[
            "contenders",
            "N",
            "handover median",
            "handover p99",
            "to other",
            "longest wait",
            "acq/s",
            "CPU/acq",
            "overlaps",
        ],
    );
    for c in &e.contended {
        let f = &c.figures;
        row(
            o,
            &[
                c.kind.name().into(),
                c.contenders.to_string(),
                ns(f.handover_median_us * 1e3),
                ns(f.handover_p99_us * 1e3),
                format!("{}%", num(f.to_other_pct, 1)),
                ns(f.longest_wait_ms * 1e6),
                num(f.throughput_per_s, 0),
                ns(f.cpu_us_per_acquisition * 1e3),
                num(f.overlaps, 0),
            ],
        );
    }
    o.push('\n');
}

fn targets(o: &mut String, r: &Report) {
    let _ = writeln!(o, "### Targets\n");
    header(
        o,
        &[
            "target",
            "where",
            "measured",
            "limit",
            "verdict (measured / limit)",
        ],
    );
    for t in &r.targets {
        row(
            o,
            &[
                t.target.clone(),
                t.context.clone(),
                format!("{} {}", num(t.value, t.decimals()), t.unit)
                    .trim_end()
                    .to_owned(),
                t.limit_text(),
                t.verdict(),
            ],
        );
    }
}
