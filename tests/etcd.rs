//! The etcd backend (`--features etcd`): the same plugin and the same `exec` command line
//! coordinating through etcd from separate host processes, a holder paused past its lease, and
//! an etcd that is not there.
//!
//! The tests start Debian's `etcd` (etcd-server) themselves on loopback ports, with its data
//! on tmpfs, and stop it afterwards; without an `etcd` binary they say `skipped: ...` and pass.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    EXEC_INCREMENT, Scratch, assert_exclusive, cache_dir, count, guest, output, stderr, stdout,
};

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether an `etcd` binary is on PATH.
fn etcd_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// One etcd member on loopback, its data on tmpfs; stopped and removed when dropped.
struct Etcd {
    child: Child,
    data: PathBuf,
    url: String,
}

impl Etcd {
    /// Start a single-member cluster and wait until it answers; `None` (saying why) if this
    /// machine has no etcd.
    fn start(tag: &str) -> Option<Etcd> {
        let Some(etcd) = etcd_binary() else {
            eprintln!("skipped: no `etcd` binary on PATH (Debian: apt-get install etcd-server)");
            return None;
        };
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let data = base.join(format!("lockbydir-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let child = Command::new(etcd)
            .args(["--name", "m0", "--data-dir"])
            .arg(data.join("m0"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m0={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let etcd = Etcd { child, data, url };
        etcd.wait_ready();
        Some(etcd)
    }

    /// Poll `status` until etcd answers (a cold start on a loaded machine takes a while).
    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(90);
        while Instant::now() < until {
            let o = output(Command::new(env!("CARGO_BIN_EXE_lockbydir")).args([
                "status",
                "--backend",
                "etcd",
                "--etcd-endpoints",
                &self.url,
            ]));
            if o.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default();
        panic!("etcd at {} never answered; its log:\n{log}", self.url);
    }

    /// `lockbydir` with `args` against this etcd. `locks` is not passed: beside a backend
    /// that keeps no lock directory, `--locks` is refused.
    fn lockbydir(&self, locks: &Path, args: &[&str]) -> Command {
        let _ = locks;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockbydir"));
        cmd.env("LOCKBYDIR_CACHE_DIR", cache_dir())
            .env_remove("LOCKBYDIR_DIR");
        let (sub, rest) = args.split_first().unwrap();
        cmd.arg(sub)
            .args(["--backend", "etcd", "--etcd-endpoints", &self.url])
            .args(rest);
        cmd
    }

    /// `status --json` against this etcd.
    fn status(&self, locks: &Path) -> Vec<serde_json::Value> {
        let o = output(&mut self.lockbydir(locks, &["status", "--json"]));
        assert!(o.status.success(), "status failed: {}", stderr(&o));
        let report = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();
        report["locks"].as_array().unwrap().clone()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(self.data.with_extension("log"));
    }
}

/// Wait for `child` at most `limit`; kill it and panic if it is still running then.
fn wait_at_most(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn plugins_and_exec_loops_in_separate_processes_take_turns_on_one_etcd_lock() {
    let Some(etcd) = Etcd::start("hammer") else {
        return;
    };
    let scratch = Scratch::new("etcd-hammer");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let rounds = 10;
    std::fs::write(work.join("counter"), "0").unwrap();
    let mut children = Vec::new();
    // The same counter.wasm as on the lockdir backend, unchanged.
    for i in 0..2 {
        let mut run = etcd.lockbydir(&locks, &["run", "--quiet", "--dir"]);
        run.arg(format!("{}::/work", work.display()))
            .arg(guest("counter.wasm"))
            .args(["--", "--lock", "shared", "--counter", "/work/counter"])
            .args(["--log", "/work/log", "--rounds", &rounds.to_string()])
            .args(["--label", &format!("run-{i}")]);
        children.push(run.spawn().unwrap());
    }
    // The same exec command line as on the lockdir backend, with the backend's two options.
    for i in 0..2 {
        let exe = env!("CARGO_BIN_EXE_lockbydir");
        let script = format!(
            "for i in $(seq {rounds}); do \"{exe}\" exec --backend etcd --etcd-endpoints \"$2\" --quiet shared -- sh -c '{EXEC_INCREMENT}' sh \"$1\" exec-{i} || exit 1; done"
        );
        let mut sh = Command::new("sh");
        sh.env("LOCKBYDIR_CACHE_DIR", cache_dir())
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&work)
            .arg(&etcd.url);
        children.push(sh.spawn().unwrap());
    }
    for mut child in children {
        let status = wait_at_most(&mut child, Duration::from_secs(300), "a contender");
        assert!(status.success(), "a contender failed");
    }
    assert_eq!(count(&work.join("counter")), 4 * rounds);
    // No two holds overlap, and fences rise in the order the holds happened.
    assert_exclusive(&work.join("log"), 4 * rounds);
    let row = etcd
        .status(&locks)
        .into_iter()
        .find(|r| r["name"] == "shared")
        .expect("status lists the lock");
    assert_eq!(row["state"], "free", "{row}");
}

/// The row of lock `name` once `holder` holds it (polls `status`).
fn wait_until_held(etcd: &Etcd, locks: &Path, name: &str, holder: &str, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if etcd
            .status(locks)
            .iter()
            .any(|r| r["name"] == name && r["state"] == "held" && r["holder"] == holder)
        {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the holder exited before taking the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("lock {name} never became held by {holder}");
}

#[test]
fn a_holder_paused_past_its_lease_is_told_compromised_and_its_fence_is_lower() {
    let Some(etcd) = Etcd::start("paused") else {
        return;
    };
    let scratch = Scratch::new("etcd-paused");
    let locks = scratch.dir("locks");
    let go = scratch.join("go");
    let first = scratch.join("first-fence");
    let second = scratch.join("second-fence");
    // The command waits for `go`; lockbydir refreshes its 2 s lease meanwhile.
    let mut victim = etcd
        .lockbydir(
            &locks,
            &[
                "exec", "--lease", "2s", "--holder", "victim", "paused", "--",
            ],
        )
        .args([
            "sh",
            "-c",
            r#"echo $LOCKBYDIR_FENCE > "$0"; while [ ! -e "$1" ]; do sleep 0.05; done"#,
        ])
        .arg(&first)
        .arg(&go)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_held(&etcd, &locks, "paused", "victim", &mut victim);
    // Pause lockbydir itself (not its command): its refreshes stop, its lease runs out.
    let pid = victim.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = output(
        etcd.lockbydir(
            &locks,
            &[
                "exec", "--wait", "120s", "--holder", "second", "paused", "--",
            ],
        )
        .args(["sh", "-c", r#"echo $LOCKBYDIR_FENCE > "$0""#])
        .arg(&second),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(&go, "").unwrap();
    let status = wait_at_most(&mut victim, Duration::from_secs(120), "the resumed holder");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut victim.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(
        status.code(),
        Some(70),
        "not reported as compromised: {err}"
    );
    assert!(err.contains("compromised"), "{err}");
    let fence = |p: &Path| -> u64 { std::fs::read_to_string(p).unwrap().trim().parse().unwrap() };
    assert!(
        fence(&first) < fence(&second),
        "the paused holder's fence {} is not below the new holder's {}",
        fence(&first),
        fence(&second)
    );
}

/// A page of etcd's HTTP server (`GET`, or `POST` with a JSON body): its body.
fn http(etcd: &Etcd, path: &str, body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let addr = etcd.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    match body {
        None => write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap(),
        Some(b) => write!(
            conn,
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
        .unwrap(),
    }
    let mut page = String::new();
    conn.read_to_string(&mut page).unwrap();
    page.split_once("\r\n\r\n")
        .map_or(page.clone(), |(_, b)| b.to_owned())
}

/// etcd's count of gRPC calls of `method` (`Txn`, `LeaseGrant`, `Watch`...): `started`
/// (`grpc_server_started_total`) or handled (`grpc_server_handled_total`, every code), read
/// from its `/metrics` page.
fn grpc_calls(etcd: &Etcd, method: &str, started: bool) -> u64 {
    let metric = match started {
        true => "grpc_server_started_total{",
        false => "grpc_server_handled_total{",
    };
    let method = format!("grpc_method=\"{method}\"");
    http(etcd, "/metrics", None)
        .lines()
        .filter(|l| l.starts_with(metric) && l.contains(&method))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn a_contended_exec_enqueues_once_and_takes_the_lock_with_one_request_after_the_release() {
    let Some(etcd) = Etcd::start("requests") else {
        return;
    };
    let scratch = Scratch::new("etcd-requests");
    let locks = scratch.dir("locks");
    let go = scratch.join("go");
    let mut holder = etcd
        .lockbydir(&locks, &["exec", "--holder", "first", "counted", "--"])
        .args(["sh", "-c", r#"while [ ! -e "$0" ]; do sleep 0.05; done"#])
        .arg(&go)
        .spawn()
        .unwrap();
    wait_until_held(&etcd, &locks, "counted", "first", &mut holder);
    let grants = grpc_calls(&etcd, "LeaseGrant", false);
    let watches = grpc_calls(&etcd, "Watch", true);
    let mut waiter = etcd
        .lockbydir(
            &locks,
            &[
                "exec", "--quiet", "--wait", "60s", "--holder", "second", "counted", "--", "true",
            ],
        )
        .spawn()
        .unwrap();
    // In line once it watches the key ahead of its own.
    let until = Instant::now() + Duration::from_secs(60);
    while grpc_calls(&etcd, "Watch", true) == watches {
        assert!(Instant::now() < until, "the waiter never started watching");
        assert!(waiter.try_wait().unwrap().is_none(), "the waiter exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let txns = grpc_calls(&etcd, "Txn", false);
    std::fs::write(&go, "").unwrap();
    assert!(wait_at_most(&mut holder, Duration::from_secs(60), "the holder").success());
    assert!(wait_at_most(&mut waiter, Duration::from_secs(60), "the waiter").success());
    // Trying first (to say that it waits) and then waiting is one place in line: one lease.
    assert_eq!(grpc_calls(&etcd, "LeaseGrant", false) - grants, 1);
    // After the watch fired: the holder's release, the waiter's one transaction that found
    // itself first and took the lock, and the waiter's release.
    assert_eq!(grpc_calls(&etcd, "Txn", false) - txns, 3);
}

/// A gauge from etcd's `/metrics` page: `etcd_debugging_mvcc_slow_watcher_total` (watches
/// that started at a revision already written and wait for etcd's catch-up loop, every
/// 100 ms, to be sent their events) or `etcd_debugging_mvcc_watcher_total` (all watches).
fn gauge(etcd: &Etcd, name: &str) -> u64 {
    let prefix = format!("{name} ");
    http(etcd, "/metrics", None)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("etcd reports no {name}")) as u64
}

#[test]
fn a_waiter_whose_queue_was_written_before_it_watched_is_told_of_the_release_at_once() {
    use std::io::{ErrorKind, Read, Write};
    use std::os::unix::net::UnixStream;
    let Some(etcd) = Etcd::start("late-watch") else {
        return;
    };
    let scratch = Scratch::new("etcd-late-watch");
    let locks = scratch.dir("locks");
    let go = scratch.join("go");
    let mut holder = etcd
        .lockbydir(
            &locks,
            &[
                "exec", "--lease", "60s", "--holder", "first", "watched", "--",
            ],
        )
        .args(["sh", "-c", r#"while [ ! -e "$0" ]; do sleep 0.05; done"#])
        .arg(&go)
        .spawn()
        .unwrap();
    wait_until_held(&etcd, &locks, "watched", "first", &mut holder);
    // The waiter's stderr is a socket already full: it stops at its "blocking waiting"
    // notice, after it took its place in line and before it waits.
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    let chunk = [b'.'; 4096];
    loop {
        match (&theirs).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the socket: {e}"),
        }
    }
    theirs.set_nonblocking(false).unwrap();
    let txns = grpc_calls(&etcd, "Txn", false);
    let mut waiter = etcd
        .lockbydir(
            &locks,
            &[
                "exec", "--wait", "60s", "--holder", "second", "watched", "--", "true",
            ],
        )
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while grpc_calls(&etcd, "Txn", false) == txns {
        assert!(
            Instant::now() < until,
            "the waiter never took its place in line"
        );
        assert!(waiter.try_wait().unwrap().is_none(), "the waiter exited");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Someone else writes: the revision the waiter read its place at is now in the past.
    let put = http(
        &etcd,
        "/v3/kv/put",
        Some(r#"{"key":"b3RoZXI=","value":"MQ=="}"#),
    );
    assert!(put.contains("revision"), "{put}");
    // Let the waiter go on (what it wrote is read to the end in the background).
    let drain = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = ours.read_to_end(&mut all);
        String::from_utf8_lossy(&all)
            .trim_start_matches('.')
            .to_owned()
    });
    // Over more than one round of etcd's catch-up loop (100 ms), no watch waits for it.
    let until = Instant::now() + Duration::from_millis(300);
    let (mut slow, mut watchers) = (0, 0);
    while Instant::now() < until {
        slow = slow.max(gauge(&etcd, "etcd_debugging_mvcc_slow_watcher_total"));
        watchers = watchers.max(gauge(&etcd, "etcd_debugging_mvcc_watcher_total"));
    }
    std::fs::write(&go, "").unwrap();
    assert!(wait_at_most(&mut holder, Duration::from_secs(60), "the holder").success());
    let status = wait_at_most(&mut waiter, Duration::from_secs(60), "the waiter");
    let said = drain.join().unwrap();
    assert!(status.success(), "{said}");
    assert!(
        said.contains("blocking waiting for lock `watched`"),
        "{said}"
    );
    assert_eq!(
        slow, 0,
        "a watch started at a revision already written: etcd sends its events only in its \
         catch-up loop, up to 100 ms late"
    );
    // The key ahead is watched twice, so that one watch that etcd files as behind (a write
    // committed while it registered it) is not the only one.
    assert_eq!(watchers, 2, "watches of the key ahead");
}

#[test]
fn an_etcd_that_is_down_at_start_is_a_clear_error_naming_it() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let scratch = Scratch::new("etcd-down");
    let locks = scratch.dir("locks");
    let plugin = guest("counter.wasm");
    let runs: [Vec<&str>; 3] = [
        vec!["exec", "job", "--", "true"],
        vec!["status"],
        vec!["run", plugin.to_str().unwrap()],
    ];
    for args in runs {
        // No `--locks`: beside a backend that keeps no lock directory, it is refused.
        let _ = &locks;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockbydir"));
        cmd.env("LOCKBYDIR_CACHE_DIR", cache_dir())
            .env_remove("LOCKBYDIR_DIR")
            .arg(args[0])
            .args(["--backend", "etcd", "--etcd-endpoints", &url])
            .args(&args[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(60), args[0]);
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_eq!(status.code(), Some(69), "{}: {err}", args[0]);
        assert!(
            err.contains(&url),
            "{}: the endpoint is not named: {err}",
            args[0]
        );
        assert!(err.contains("cannot reach etcd"), "{}: {err}", args[0]);
        assert_eq!(stdout(&o), "", "{}", args[0]);
    }
}

/// A 3-member etcd cluster on loopback; stopped and removed when dropped.
struct Cluster {
    members: Vec<Etcd>,
}

impl Cluster {
    fn start(tag: &str) -> Option<Cluster> {
        let etcd = etcd_binary().or_else(|| {
            eprintln!("skipped: no `etcd` binary on PATH (Debian: apt-get install etcd-server)");
            None
        })?;
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = base.join(format!("lockbydir-etcd-{tag}-{}-m{i}", std::process::id()));
            let _ = std::fs::remove_dir_all(&data);
            std::fs::create_dir_all(&data).unwrap();
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(data.with_extension("log")).unwrap();
            let child = Command::new(&etcd)
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(data.join("data"))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial])
                .args([
                    "--initial-cluster-token",
                    &format!("{tag}-{}", std::process::id()),
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            members.push(Etcd { child, data, url });
        }
        let cluster = Cluster { members };
        for m in &cluster.members {
            m.wait_ready();
        }
        Some(cluster)
    }

    /// All client URLs, as `--etcd-endpoints` takes them.
    fn endpoints(&self) -> String {
        let urls: Vec<&str> = self.members.iter().map(|m| m.url.as_str()).collect();
        urls.join(",")
    }

    /// The member that is the leader now (by its `etcd_server_is_leader` metric).
    fn leader(&self) -> usize {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            for (i, m) in self.members.iter().enumerate() {
                let o = Command::new("curl")
                    .args(["-s", "--max-time", "2", &format!("{}/metrics", m.url)])
                    .output();
                if let Ok(o) = o
                    && String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .any(|l| l == "etcd_server_is_leader 1")
                {
                    return i;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no etcd member says it is the leader");
    }

    /// Whether lock `name` is held now, asked of member `via`.
    fn held(&self, locks: &Path, via: usize, name: &str) -> bool {
        let o = output(&mut self.members[via].lockbydir(locks, &["status", "--json"]));
        o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .ok()
                .and_then(|v| v["locks"].as_array().cloned())
                .is_some_and(|rows| {
                    rows.iter()
                        .any(|r| r["name"] == name && r["state"] == "held")
                })
    }
}

/// How many holds the hold log records so far (the counter file may be mid-write).
fn holds(work: &Path) -> usize {
    std::fs::read_to_string(work.join("log")).map_or(0, |t| t.lines().count())
}

/// Shell loops of `exec` (holding 50 ms each), `rounds` each, against `endpoints`.
fn exec_loops(work: &Path, endpoints: &str, loops: usize, rounds: usize) -> Vec<Child> {
    std::fs::write(work.join("counter"), "0").unwrap();
    (0..loops)
        .map(|i| {
            let exe = env!("CARGO_BIN_EXE_lockbydir");
            let script = format!(
                "for i in $(seq {rounds}); do \"{exe}\" exec --backend etcd --etcd-endpoints \"$2\" --quiet --lease 5s shared -- sh -c '{EXEC_INCREMENT}; sleep 0.05' sh \"$1\" exec-{i} || exit 1; done"
            );
            Command::new("sh")
                .env("LOCKBYDIR_CACHE_DIR", cache_dir())
                .arg("-c")
                .arg(script)
                .arg("sh")
                .arg(work)
                .arg(endpoints)
                .spawn()
                .unwrap()
        })
        .collect()
}

#[test]
fn killing_the_leader_while_the_lock_is_held_and_waited_for_lets_no_two_in() {
    let Some(mut cluster) = Cluster::start("leader") else {
        return;
    };
    let scratch = Scratch::new("etcd-leader");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let (loops, rounds) = (3, 12);
    let mut children = exec_loops(&work, &cluster.endpoints(), loops, rounds);
    // Once a few holds are done and the lock is held (the others waiting), kill the leader.
    let leader = cluster.leader();
    let other = (leader + 1) % 3;
    let until = Instant::now() + Duration::from_secs(120);
    while holds(&work) < 3 || !cluster.held(&locks, other, "shared") {
        assert!(Instant::now() < until, "the hammer never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = cluster.members[leader].child.kill();
    killed.unwrap();
    cluster.members[leader].child.wait().unwrap();
    let before = holds(&work);
    for mut child in children.drain(..) {
        let status = wait_at_most(&mut child, Duration::from_secs(300), "a contender");
        assert!(
            status.success(),
            "a contender failed after the leader was killed"
        );
    }
    assert!(
        count(&work.join("counter")) > before,
        "nobody got in after the leader died"
    );
    assert_eq!(count(&work.join("counter")), loops * rounds);
    assert_exclusive(&work.join("log"), loops * rounds);
}

#[test]
fn a_member_paused_and_resumed_stops_nobody() {
    let Some(cluster) = Cluster::start("paused-member") else {
        return;
    };
    let scratch = Scratch::new("etcd-paused-member");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let (loops, rounds) = (3, 12);
    let mut children = exec_loops(&work, &cluster.endpoints(), loops, rounds);
    let leader = cluster.leader();
    let other = (leader + 1) % 3;
    let until = Instant::now() + Duration::from_secs(120);
    while holds(&work) < 3 || !cluster.held(&locks, other, "shared") {
        assert!(Instant::now() < until, "the hammer never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Pause the leader until the others have moved on, then resume it.
    let pid = cluster.members[leader].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let before = holds(&work);
    let until = Instant::now() + Duration::from_secs(120);
    while holds(&work) < before + 3 {
        assert!(
            Instant::now() < until,
            "nobody got in while a member was paused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    for mut child in children.drain(..) {
        let status = wait_at_most(&mut child, Duration::from_secs(300), "a contender");
        assert!(
            status.success(),
            "a contender failed around the paused member"
        );
    }
    assert_eq!(count(&work.join("counter")), loops * rounds);
    assert_exclusive(&work.join("log"), loops * rounds);
}

/// A WASI 0.3 plugin's tasks wait for an etcd lock through `lockbydir:waiting` (etcd's watch,
/// no thread per wait) beside an exec loop; then a wait cut short by a timer leaves no key in
/// line and never takes the lock.
#[test]
fn an_async_plugin_s_tasks_wait_for_an_etcd_lock_and_a_dropped_wait_leaves_the_line() {
    let Some(etcd) = Etcd::start("waiting") else {
        return;
    };
    let scratch = Scratch::new("etcd-waiting");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    let rounds = 10;
    std::fs::write(work.join("counter"), "0").unwrap();
    let mut tasks = etcd.lockbydir(&locks, &["run", "--quiet", "--dir"]);
    tasks
        .arg(format!("{}::/work", work.display()))
        .arg(guest("tasks.wasm"))
        .args([
            "--",
            "count",
            "--lock",
            "shared",
            "--counter",
            "/work/counter",
        ])
        .args(["--log", "/work/log", "--waits", "20", "--label", "tasks"]);
    let mut children = vec![tasks.spawn().unwrap()];
    let exe = env!("CARGO_BIN_EXE_lockbydir");
    let script = format!(
        "for i in $(seq {rounds}); do \"{exe}\" exec --backend etcd --etcd-endpoints \"$2\" --quiet shared -- sh -c '{EXEC_INCREMENT}' sh \"$1\" exec || exit 1; done"
    );
    let mut sh = Command::new("sh");
    sh.env("LOCKBYDIR_CACHE_DIR", cache_dir())
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&work)
        .arg(&etcd.url);
    children.push(sh.spawn().unwrap());
    for mut child in children {
        let status = wait_at_most(&mut child, Duration::from_secs(300), "a contender");
        assert!(status.success(), "a contender failed");
    }
    assert_eq!(count(&work.join("counter")), 20 + rounds);
    assert_exclusive(&work.join("log"), 20 + rounds);

    // A holder until `go` exists; the plugin waits, gives up after 600 ms, and looks at the
    // line; then the holder lets go.
    let go = scratch.join("go");
    let mut holder = etcd.lockbydir(&locks, &["exec", "--quiet", "--holder", "sleeper"]);
    let mut holder = holder
        .args([
            "bed",
            "--",
            "sh",
            "-c",
            "while [ ! -e \"$0\" ]; do sleep 0.02; done",
        ])
        .arg(&go)
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !etcd
        .status(&locks)
        .iter()
        .any(|r| r["name"] == "bed" && r["state"] == "held")
    {
        assert!(Instant::now() < until, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut give_up = etcd.lockbydir(&locks, &["run", "--quiet", "--dir"]);
    give_up
        .arg(format!("{}::/work", work.display()))
        .arg(guest("tasks.wasm"))
        .args(["--", "give-up", "--lock", "bed", "--after-ms", "600"])
        .stdout(Stdio::piped());
    let mut plugin = give_up.spawn().unwrap();
    let mut said = String::new();
    let stdout = std::io::BufReader::new(plugin.stdout.take().unwrap());
    let mut lines = std::io::BufRead::lines(stdout);
    for line in lines.by_ref() {
        let line = line.unwrap();
        said += &format!("{line}\n");
        if line.starts_with("waiters now: ") {
            break;
        }
    }
    std::fs::write(&go, "").unwrap();
    for line in lines {
        said += &format!("{}\n", line.unwrap());
    }
    let status = wait_at_most(&mut plugin, Duration::from_secs(60), "the plugin");
    assert!(status.success(), "{said}");
    assert!(said.contains("waiters while waiting: 1\n"), "{said}");
    assert!(
        said.contains("waiters now: 0; this handle's fence: None\n"),
        "{said}"
    );
    assert!(said.ends_with("this handle's fence: None\n"), "{said}");
    assert!(wait_at_most(&mut holder, Duration::from_secs(60), "the holder").success());
}
