//! `lockbydir status` like lslocks: the waiters of a lock (real `exec` processes in its
//! queue), the holder's pid and host from the label `exec` writes, name filters, a broken
//! queue shown as what it is, and `--json` held to the schema docs/cli.md documents.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};

use common::{Scratch, lockbydir, now_ms, output, status, stderr, stdout};

/// Poll `status` (about 30 s at most) until lock `name`'s row satisfies `ok`.
fn wait_for_row(
    locks: &std::path::Path,
    name: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..600 {
        if let Some(row) = status(locks)
            .into_iter()
            .find(|r| r["name"] == name && ok(r))
        {
            return row;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("lock {name} never showed {what}: {:?}", status(locks));
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn status_shows_three_waiting_execs_and_the_holders_pid_and_host() {
    let scratch = Scratch::new("status-waiters");
    let locks = scratch.dir("locks");
    let before = now_ms();
    // A lease the holder keeps renewing while it runs, short enough that the waiters take
    // over soon after the holder is killed below.
    let holder = lockbydir(&locks)
        .args(["exec", "--lease", "5s", "bed", "--", "sleep", "120"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let held = wait_for_row(&locks, "bed", "held", |r| r["state"] == "held");
    assert_eq!(held["holder_pid"], holder.id(), "{held}");
    let host = lockbydir_cli::holder_label::this_host();
    assert_eq!(held["holder_host"], host.as_str(), "{held}");
    assert_eq!(held["queue"]["waiters"], 0, "{held}");
    let waiters: Vec<Child> = (0..3)
        .map(|_| {
            lockbydir(&locks)
                .args(["exec", "--quiet", "-w", "5m", "bed", "--", "true"])
                .spawn()
                .unwrap()
        })
        .collect();
    let row = wait_for_row(&locks, "bed", "3 waiters", |r| r["queue"]["waiters"] == 3);
    assert_eq!(row["holder_pid"], holder.id(), "{row}");
    let oldest = row["queue"]["oldest_since_ms"].as_u64().unwrap();
    assert!(oldest >= before && oldest <= now_ms(), "{row}");
    let age = row["queue"]["oldest_age_ms"].as_u64().unwrap();
    assert!(age <= now_ms() - before, "{row}");
    let table = stdout(&output(lockbydir(&locks).arg("status")));
    let line = table.lines().find(|l| l.starts_with("bed ")).unwrap();
    let columns: Vec<&str> = line.split_whitespace().collect();
    // NAME STATE FENCE AGE EXPIRES(2 words) WAITERS OLDEST PID HOLDER...
    assert_eq!(columns[6], "3", "{table}");
    assert_eq!(columns[8], holder.id().to_string(), "{table}");
    assert!(
        line.ends_with(&format!("sleep (pid {} on {host})", holder.id())),
        "{table}"
    );
    // Once the holder is gone the waiters take their turns, and leave the queue.
    stop(holder);
    for mut w in waiters {
        assert!(w.wait().unwrap().success());
    }
    let row = wait_for_row(&locks, "bed", "free", |r| r["state"] == "free");
    assert_eq!(row["queue"]["waiters"], 0, "{row}");
    assert!(row["holder_pid"].is_null(), "{row}");
}

#[test]
fn status_shows_only_the_locks_named_or_matched() {
    let scratch = Scratch::new("status-filter");
    let locks = scratch.dir("locks");
    for name in ["build-a", "build-b", "deploy", "xbuild-"] {
        std::fs::create_dir_all(locks.join(format!("{name}.lockdir/free.1"))).unwrap();
    }
    let names = |args: &[&str]| -> Vec<String> {
        let o = output(lockbydir(&locks).arg("status").arg("--json").args(args));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let names: Vec<String> = report["locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        // As grep does: 1 when names were given and no lock matched.
        let expected = if !args.is_empty() && names.is_empty() {
            1
        } else {
            0
        };
        assert_eq!(o.status.code(), Some(expected), "{args:?}: {}", stderr(&o));
        names
    };
    assert_eq!(names(&["build-*"]), ["build-a", "build-b"]);
    assert_eq!(names(&["deploy", "*-b"]), ["build-b", "deploy"]);
    assert_eq!(names(&["*build*"]).len(), 3);
    assert_eq!(names(&[]).len(), 4);
    assert!(names(&["nothing*"]).is_empty());
    let o = output(lockbydir(&locks).args(["status", "nothing*"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains(&format!(
            "no lock matches `nothing*` in {}",
            locks.display()
        )),
        "{}",
        stderr(&o)
    );
    let o = output(lockbydir(&locks).args(["status", "deploy"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
    assert_eq!(stderr(&o), "");
    // A name that matched nothing beside one that matched is named on stderr.
    let o = output(lockbydir(&locks).args(["status", "deploy", "nosuch"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("no lock matches `nosuch`"),
        "{}",
        stderr(&o)
    );
    // No locks at all, and none asked for, is no failure.
    let empty = scratch.dir("empty");
    let o = output(lockbydir(&empty).arg("status"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("no locks in"), "{}", stdout(&o));
    // A pattern follows the lock-name rules, as --allow-lock's do.
    let o = output(lockbydir(&locks).args(["status", "a/b"]));
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("invalid lock name pattern"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_broken_queue_is_shown_as_what_it_is_and_hides_nothing() {
    let scratch = Scratch::new("status-broken-queue");
    let locks = scratch.dir("locks");
    let now = now_ms();
    for name in ["file", "foreign", "stale", "fine"] {
        std::fs::create_dir_all(locks.join(format!("{name}.lockdir/free.2"))).unwrap();
    }
    // A queue that is a file; one with names lockbydir never writes next to a live ticket;
    // one whose only ticket expired (a waiter that died).
    std::fs::write(locks.join("file.queue"), "").unwrap();
    std::fs::create_dir_all(locks.join("foreign.queue/junk")).unwrap();
    std::fs::write(locks.join("foreign.queue/wait.notes"), "").unwrap();
    let live = format!("wait.{now}.00000000000000aa.{}", now + 3_600_000);
    std::fs::create_dir_all(locks.join("foreign.queue").join(live)).unwrap();
    std::fs::create_dir_all(locks.join("stale.queue/wait.1000.00000000000000bb.2000")).unwrap();
    let rows: BTreeMap<String, serde_json::Value> = status(&locks)
        .into_iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(rows.len(), 4);
    let file = &rows["file"]["queue"];
    assert!(file["waiters"].is_null(), "{file}");
    let why = file["error"].as_str().unwrap();
    assert!(
        why.contains("file.queue") && why.contains("read-dir"),
        "{why}"
    );
    assert_eq!(rows["file"]["state"], "free");
    let foreign = &rows["foreign"]["queue"];
    assert_eq!(foreign["waiters"], 1, "{foreign}");
    assert_eq!(
        foreign["foreign"],
        serde_json::json!(["junk", "wait.notes"])
    );
    assert_eq!(foreign["oldest_since_ms"], now, "{foreign}");
    let stale = &rows["stale"]["queue"];
    assert_eq!(
        (stale["waiters"].as_u64(), stale["expired_tickets"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(rows["fine"]["queue"]["error"].is_null());
    let table = stdout(&output(lockbydir(&locks).arg("status")));
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("file ").contains("[queue: read-dir `file.queue`"),
        "{table}"
    );
    assert!(
        line("file ").split_whitespace().nth(5) == Some("?"),
        "{table}"
    );
    assert!(!table.lines().any(|l| l.ends_with(' ')), "{table}");
    assert!(
        line("foreign ").ends_with("[queue: 2 names lockbydir never writes: junk, wait.notes]"),
        "{table}"
    );
}

/// The `--json` schema docs/cli.md documents: field path (`locks[].queue.waiters`) to its type.
fn documented_schema() -> BTreeMap<String, String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
    let begin = readme
        .find("<!-- status-json-schema: begin -->")
        .expect("schema begin");
    let end = readme
        .find("<!-- status-json-schema: end -->")
        .expect("schema end");
    readme[begin..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let field = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((field.to_owned(), cells.get(2)?.to_string()))
        })
        .collect()
}

/// The JSON type of a value, in the words of docs/cli.md.
fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Every field path in `v` with the types seen there (`array of string` for an array of
/// strings).
fn observed(path: &str, v: &serde_json::Value, out: &mut BTreeMap<String, BTreeSet<String>>) {
    let mut kind = type_name(v).to_owned();
    if let serde_json::Value::Array(items) = v {
        if let Some(first) = items.first()
            && !first.is_object()
        {
            kind = format!("array of {}", type_name(first));
        }
        for item in items {
            if item.is_object() {
                observed(&format!("{path}[]"), item, out);
            }
        }
    }
    if let serde_json::Value::Object(fields) = v {
        for (key, value) in fields {
            let sub = match path.is_empty() {
                true => key.clone(),
                false => format!("{path}.{key}"),
            };
            observed(&sub, value, out);
        }
    }
    if !path.is_empty() && !path.ends_with("[]") {
        let kinds = out.entry(path.to_owned()).or_default();
        // An empty array shows no element type: it is seen, but its type is not.
        if v.as_array().is_none_or(|a| !a.is_empty()) {
            kinds.insert(kind);
        }
    }
}

#[test]
fn status_json_is_exactly_the_schema_the_docs_document() {
    let scratch = Scratch::new("status-schema");
    let locks = scratch.dir("locks");
    // Every kind of row: held by `exec` (pid and host), free, broken, and a queue with a
    // foreign name and one that cannot be read.
    let holder = lockbydir(&locks)
        .args(["exec", "--lease", "1m", "held", "--", "sleep", "120"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_row(&locks, "held", "held", |r| r["state"] == "held");
    let waiter = lockbydir(&locks)
        .args(["exec", "--quiet", "-w", "5m", "held", "--", "true"])
        .spawn()
        .unwrap();
    wait_for_row(&locks, "held", "a waiter", |r| r["queue"]["waiters"] == 1);
    std::fs::create_dir_all(locks.join("free.lockdir/free.3")).unwrap();
    std::fs::create_dir_all(locks.join("free.queue/junk")).unwrap();
    std::fs::create_dir_all(locks.join("broken.lockdir/.DS_Store")).unwrap();
    std::fs::write(locks.join("broken.queue"), "").unwrap();
    let o = output(lockbydir(&locks).args(["status", "--json"]));
    stop(holder);
    stop(waiter);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["version"], 1);
    let mut seen = BTreeMap::new();
    observed("", &report, &mut seen);
    let documented = documented_schema();
    assert!(documented.len() >= 20, "{documented:?}");
    for (field, kinds) in &seen {
        let doc = documented
            .get(field)
            .unwrap_or_else(|| panic!("`{field}` is in the output but not in docs/cli.md"));
        let allowed: BTreeSet<&str> = doc.split(" or ").collect();
        for kind in kinds {
            assert!(
                allowed.contains(kind.as_str()),
                "`{field}` is {kind}, docs/cli.md says {doc}"
            );
        }
    }
    for (field, doc) in &documented {
        let kinds = seen
            .get(field)
            .unwrap_or_else(|| panic!("docs/cli.md documents `{field}`, the output has none"));
        // Each documented type shows up in this output (null included, where documented).
        for kind in doc.split(" or ") {
            assert!(
                kinds.contains(kind),
                "`{field}` ({doc}) was never {kind}: {kinds:?}"
            );
        }
    }
}
