//! `lockbydir bench --smoke` runs every part of the benchmark, with every peer (lockbydir
//! with and without wake-ups, flock, seed-like), and writes JSON with the expected keys and
//! a well-formed SVG picture with the expected series. Only that it works is checked, never
//! how fast anything is; besides, no two holds may overlap, whatever the lock.

mod common;

use common::{Scratch, lockbydir, output, stderr, stdout};
use serde_json::Value;

/// `value[key]`, failing with the key's name if it is missing.
fn get<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no key {key:?} in {value:#}"))
}

#[test]
fn bench_smoke_runs_and_writes_json() {
    let scratch = Scratch::new("bench-smoke");
    let dir = scratch.dir("fs");
    let json = scratch.join("bench.json");
    let o = output(
        lockbydir(&dir)
            .args(["bench", "--smoke", "--dir"])
            .arg(&dir)
            .arg("--json")
            .arg(&json),
    );
    assert!(o.status.success(), "bench failed: {}", stderr(&o));
    assert!(stdout(&o).contains("### Targets"), "{}", stdout(&o));
    // The picture goes next to the JSON when --svg does not say where.
    check_svg(&std::fs::read_to_string(scratch.join("bench.svg")).unwrap());

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(get(&report, "mode"), "smoke");
    for key in ["command", "machine", "plan", "targets"] {
        get(&report, key);
    }
    let startup = get(&report, "startup");
    for key in [
        "compile_no_cache_ms",
        "start_from_cache_ms",
        "one_more_plugin_ms",
        "process_run_ms",
        "rss_per_idle_plugin_kib",
    ] {
        assert!(get(startup, key).is_number(), "startup.{key}");
    }

    let dirs = get(&report, "dirs").as_array().unwrap();
    assert_eq!(dirs.len(), 1);
    let d = &dirs[0];
    let uncontended = get(d, "uncontended");
    for key in [
        "mkdir_rmdir_ns",
        "flock_ns",
        "protocol_ns",
        "service_ns",
        "plugin_ns",
        "plugin_polling_ns",
        "plugin_over_protocol",
        "plugin_polling_over_protocol",
        "plugin_over_mkdir_rmdir",
    ] {
        assert!(get(uncontended, key).is_number(), "uncontended.{key}");
    }
    let contended = get(d, "contended").as_array().unwrap();
    assert_has_kinds(contended, &PEERS);
    for row in contended {
        for key in [
            "kind",
            "contenders",
            "handover_median_us",
            "to_other_pct",
            "longest_wait_ms",
        ] {
            get(row, key);
        }
        let overlaps = get(row, "overlaps").as_f64();
        assert_eq!(overlaps, Some(0.0), "two holders at once: {row:#}");
    }
    let waiting = get(d, "waiting").as_array().unwrap();
    assert_has_kinds(
        waiting,
        &[
            "plugin-procs",
            "plugin-procs-polling",
            "flock-procs",
            "seed-5ms-procs",
            "seed-30ms-procs",
            "plugin-threads",
            "plugin-threads-polling",
        ],
    );
    for row in waiting {
        assert!(get(row, "waiter_cpu_pct").is_number(), "{row:#}");
    }
    let after_hold = get(d, "after_hold").as_array().unwrap();
    assert_has_kinds(after_hold, &PEERS);
    for row in after_hold {
        assert!(get(row, "last_after_release_us").is_number(), "{row:#}");
    }
    let hammer = get(d, "hammer").as_array().unwrap();
    assert_has_kinds(
        hammer,
        &[
            "plugin-threads",
            "plugin-threads-polling",
            "flock-procs",
            "seed-5ms-procs",
            "seed-30ms-procs",
        ],
    );
    for h in hammer {
        assert_eq!(get(h, "overlaps"), 0, "two holders at once: {h:#}");
        let (got_in, gave_up) = (get(h, "got_in"), get(h, "gave_up"));
        assert_eq!(
            got_in.as_f64().unwrap() + gave_up.as_f64().unwrap(),
            get(h, "contenders").as_f64().unwrap(),
            "{h:#}"
        );
        assert!(get(h, "held_pct").is_number(), "{h:#}");
    }

    // One plugin instance's tasks waiting at once: one alone, then the plan's count; every
    // task queued (a ticket each) and every one held the lock (the bench checks the counter).
    let async_waits = get(&report, "async_waits").as_array().unwrap();
    let tasks: Vec<u64> = async_waits
        .iter()
        .map(|row| get(row, "tasks").as_u64().unwrap())
        .collect();
    assert_eq!(tasks, [1, 20], "{async_waits:#?}");
    for row in async_waits {
        assert_eq!(get(row, "most_tickets"), get(row, "tasks"), "{row:#}");
        assert!(get(row, "most_threads").as_u64().unwrap() > 0, "{row:#}");
        assert!(get(row, "drained_ms").is_number(), "{row:#}");
        assert!(get(row, "waiting_cpu_pct").is_number(), "{row:#}");
    }
    check_etcd(get(&report, "etcd"));

    // Every target says where it belongs, and whether it was met.
    let targets = get(&report, "targets").as_array().unwrap();
    for table in [
        "uncontended",
        "contended",
        "waiting",
        "after_hold",
        "hammer",
    ] {
        assert!(
            targets.iter().any(|t| get(t, "table") == table),
            "no target for {table}"
        );
    }
    for t in targets {
        assert!(get(t, "met").is_boolean(), "{t:#}");
        get(t, "ratio");
    }

    // The scratch directories the benchmark made are gone.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The etcd section: measured next to lockdir and flock where this build has the etcd backend
/// and an `etcd` is on PATH (CI's etcd step: `--features etcd`), else skipped, saying why.
fn check_etcd(etcd: &Value) {
    let status = get(etcd, "status").as_str().unwrap();
    let can_measure = cfg!(feature = "etcd") && on_path("etcd");
    if !can_measure {
        assert!(status.starts_with("skipped: "), "{etcd:#}");
        eprintln!("etcd section {status}");
        return;
    }
    assert_eq!(status, "measured", "{etcd:#}");
    let uncontended = get(etcd, "uncontended");
    for key in [
        "flock_ns",
        "lockdir_plugin_ns",
        "etcd_api_ns",
        "etcd_plugin_ns",
        "etcd_plugin_over_lockdir_plugin",
        "etcd_plugin_over_flock",
    ] {
        assert!(
            get(uncontended, key).as_f64().unwrap() > 0.0,
            "etcd.uncontended.{key}"
        );
    }
    let contended = get(etcd, "contended").as_array().unwrap();
    assert_has_kinds(
        contended,
        &["etcd-plugin-procs", "plugin-procs", "flock-procs"],
    );
    for row in contended {
        assert!(get(row, "acquisitions").as_f64().unwrap() > 0.0, "{row:#}");
        assert_eq!(
            get(row, "overlaps").as_f64(),
            Some(0.0),
            "two holders at once: {row:#}"
        );
    }
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Every kind of contender measured with the peers' contender count.
const PEERS: [&str; 9] = [
    "plugin-threads",
    "plugin-threads-polling",
    "plugin-procs",
    "plugin-procs-polling",
    "protocol-threads",
    "flock-threads",
    "flock-procs",
    "seed-5ms-procs",
    "seed-30ms-procs",
];

/// `rows` has a row of each of `kinds`.
fn assert_has_kinds(rows: &[Value], kinds: &[&str]) {
    for kind in kinds {
        assert!(
            rows.iter().any(|r| get(r, "kind") == *kind),
            "no {kind} row in {rows:#?}"
        );
    }
}

/// The picture is well-formed SVG with a line and a legend entry for each kind it shows.
fn check_svg(text: &str) {
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("bad SVG: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let series: Vec<_> = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .collect();
    for kind in [
        "plugin-procs",
        "plugin-procs-polling",
        "flock-procs",
        "seed-5ms-procs",
        "seed-30ms-procs",
    ] {
        let g = series
            .iter()
            .find(|g| g.attribute("data-kind") == Some(kind))
            .unwrap_or_else(|| panic!("no series {kind} in the SVG"));
        let legend: String = g.descendants().filter_map(|n| n.text()).collect();
        assert!(legend.contains(kind), "legend of {kind}: {legend:?}");
    }
    let text: String = root.descendants().filter_map(|n| n.text()).collect();
    assert!(
        text.contains("handover to a different contender"),
        "no axis label"
    );
    // At least one line is drawn (the seed-like 5 ms poll always hands over).
    assert!(
        series
            .iter()
            .any(|g| g.descendants().any(|n| n.has_tag_name("polyline"))),
        "no line in the SVG"
    );
}
