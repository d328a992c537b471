//! The etcd backend next to the lockdir backend and flock, in the same run: uncontended
//! acquire + release, and handover between `peer_contenders` looping processes. The etcd
//! server is the one `--etcd-endpoints` names, or a single member this benchmark starts from
//! the `etcd` on PATH (loopback, data on tmpfs) and stops afterwards; without either, or in a
//! lockbydir built without `--features etcd`, the section says `skipped: ...` and why.

use std::fs::File;
use std::path::Path;

use serde::Serialize;

use super::contended::{ContendedRow, measure_configs};
use super::contenders::{Kind, Setup};
use super::plan::Plan;
use super::stats::median_by;
use super::uncontended::{flock_pairs, locks_pairs, per_op, plugin_pairs, wit_options};
use lockbydir::Place;

/// What was measured on etcd, or why nothing was.
/// The status of an etcd report when `--only` left the etcd part out.
pub const NOT_MEASURED: &str = "not measured (--only)";

#[derive(Debug, Default, Serialize)]
pub struct EtcdReport {
    /// `measured`, `skipped: <why>`, or [`NOT_MEASURED`].
    pub status: String,
    /// Which server: the one started by the benchmark (its version, where its data lived), or
    /// the endpoints given.
    pub server: String,
    pub uncontended: Option<EtcdUncontended>,
    /// Handover: `etcd-plugin-procs` next to `plugin-procs` (lockdir) and `flock-procs`.
    pub contended: Vec<ContendedRow>,
}

/// Nanoseconds per uncontended acquire + release, medians over the runs (each run measures
/// every variant once, interleaved), and ratios within runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EtcdUncontended {
    pub runs: usize,
    /// Pairs per measurement of the etcd variants (flock does more: it is that much faster).
    pub ops: u64,
    pub flock_ns: f64,
    /// The bench plugin through the host into the lock component (lockdir backend).
    pub lockdir_plugin_ns: f64,
    /// The typed Rust API (`Locks`) on the etcd backend, no WebAssembly.
    pub etcd_api_ns: f64,
    /// The same bench plugin, its lock import served by the etcd backend.
    pub etcd_plugin_ns: f64,
    pub etcd_plugin_over_lockdir_plugin: f64,
    pub etcd_plugin_over_flock: f64,
}

/// One run's figures (ns per pair).
#[derive(Clone, Copy)]
struct Run {
    flock: f64,
    lockdir_plugin: f64,
    etcd_api: f64,
    etcd_plugin: f64,
}

/// Where the etcd server is: endpoints, and the member this benchmark started (stopped on
/// drop), if it started one.
pub struct Server {
    pub endpoints: Vec<String>,
    pub description: String,
    #[cfg(feature = "etcd")]
    _member: Option<member::Member>,
}

/// The server to measure against: `given` endpoints, or one started from PATH in `scratch`.
/// `Err(why)` if there is none.
#[cfg(feature = "etcd")]
pub fn server(given: &[String], scratch: &Path) -> Result<Server, String> {
    if !given.is_empty() {
        return Ok(Server {
            endpoints: given.to_vec(),
            description: format!("given: {}", given.join(",")),
            _member: None,
        });
    }
    let m = member::Member::start(scratch)?;
    Ok(Server {
        endpoints: vec![m.url.clone()],
        description: m.description.clone(),
        _member: Some(m),
    })
}

/// Without the etcd backend there is nothing to measure.
#[cfg(not(feature = "etcd"))]
pub fn server(_given: &[String], _scratch: &Path) -> Result<Server, String> {
    Err("this lockbydir was built without --features etcd".into())
}

/// Measure on etcd (`server`), with the lockdir references in `base`.
pub fn measure(
    setup: &Setup,
    plan: &Plan,
    base: &Path,
    server: Result<Server, String>,
) -> anyhow::Result<EtcdReport> {
    let server = match server {
        Ok(s) => s,
        Err(why) => {
            eprintln!("bench: etcd: skipped: {why}");
            return Ok(EtcdReport {
                status: format!("skipped: {why}"),
                ..EtcdReport::default()
            });
        }
    };
    let endpoints = server.endpoints.join(",");
    let setup = Setup {
        etcd_endpoints: Some(&endpoints),
        ..*setup
    };
    let uncontended = uncontended(&setup, plan, base, &server.endpoints)?;
    let contended = contended(&setup, plan, base)?;
    Ok(EtcdReport {
        status: "measured".into(),
        server: server.description.clone(),
        uncontended: Some(uncontended),
        contended,
    })
}

fn uncontended(
    setup: &Setup,
    plan: &Plan,
    base: &Path,
    endpoints: &[String],
) -> anyhow::Result<EtcdUncontended> {
    eprintln!("bench: etcd: uncontended");
    let locks = base.join("etcd-uncontended");
    let work = base.join("etcd-uncontended-work");
    std::fs::create_dir_all(&locks)?;
    std::fs::create_dir_all(&work)?;
    // An etcd pair costs a few round trips (milliseconds): a tenth of the lockdir plugin's.
    let ops = (plan.uncontended_ops / 10).max(20);
    let flock_file = File::create(locks.join("flock.lock"))?;
    let place = Place::from_kind("etcd", &locks, endpoints)?;
    let mut api = place.open(setup.runner.runtime())?;
    let handle = api.open("bench-uncontended-api", &wit_options())?;
    let mut runs = Vec::new();
    for _ in 0..plan.uncontended_runs {
        runs.push(Run {
            flock: per_op(ops * plan.fast_factor * 10, |n| flock_pairs(&flock_file, n))?,
            lockdir_plugin: plugin_pairs(
                setup.runner,
                setup,
                Place::LockDir(locks.clone()),
                &work,
                ops * 10,
            )?,
            etcd_api: per_op(ops, |n| locks_pairs(&mut *api, handle, n))?,
            etcd_plugin: plugin_pairs(setup.runner, setup, place.clone(), &work, ops)?,
        });
    }
    api.close(handle)?;
    let m = |f: fn(&Run) -> f64| median_by(&runs, f);
    Ok(EtcdUncontended {
        runs: runs.len(),
        ops,
        flock_ns: m(|r| r.flock),
        lockdir_plugin_ns: m(|r| r.lockdir_plugin),
        etcd_api_ns: m(|r| r.etcd_api),
        etcd_plugin_ns: m(|r| r.etcd_plugin),
        etcd_plugin_over_lockdir_plugin: m(|r| r.etcd_plugin / r.lockdir_plugin),
        etcd_plugin_over_flock: m(|r| r.etcd_plugin / r.flock),
    })
}

/// Handover between `plan.peer_contenders` processes: etcd, lockdir and flock, interleaved.
fn contended(setup: &Setup, plan: &Plan, base: &Path) -> anyhow::Result<Vec<ContendedRow>> {
    let n = plan.peer_contenders;
    let mut configs = vec![(n, Kind::EtcdPluginProcs)];
    if plan.processes {
        configs.extend([(n, Kind::PluginProcs), (n, Kind::FlockProcs)]);
    }
    measure_configs(setup, plan, base, "etcd-contend", &configs)
}

/// A single etcd member started for the benchmark.
#[cfg(feature = "etcd")]
mod member {
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// One member on loopback; killed when dropped (its data goes with the scratch directory).
    pub struct Member {
        child: Child,
        pub url: String,
        pub description: String,
    }

    fn free_port() -> Result<u16, String> {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("cannot find a free loopback port: {e}"))
    }

    /// The `etcd` on PATH.
    fn binary() -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("etcd"))
                .find(|p| p.is_file())
        })
    }

    impl Member {
        /// Start it with its data in `scratch` and wait until it answers.
        pub fn start(scratch: &Path) -> Result<Member, String> {
            let etcd = binary().ok_or(
                "no `etcd` on PATH and no --etcd-endpoints (Debian: apt-get install etcd-server)",
            )?;
            let version = Command::new(&etcd)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(|l| l.trim().to_owned())
                })
                .unwrap_or_default();
            let data = scratch.join("etcd-data");
            let (client, peer) = (free_port()?, free_port()?);
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = File::create(scratch.join("etcd.log"))
                .map_err(|e| format!("cannot write etcd's log in {}: {e}", scratch.display()))?;
            let log2 = log.try_clone().map_err(|e| e.to_string())?;
            let child = Command::new(&etcd)
                .args(["--name", "bench", "--data-dir"])
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("bench={peer_url}")])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", etcd.display()))?;
            let mut member = Member {
                child,
                url: url.clone(),
                description: format!(
                    "{version}, one member started by bench on {url}, data in {}",
                    data.display()
                ),
            };
            let until = Instant::now() + Duration::from_secs(60);
            loop {
                match lockbydir::backend::etcd::EtcdBackend::connect(std::slice::from_ref(&url)) {
                    Ok(_) => return Ok(member),
                    Err(e) if Instant::now() > until => {
                        let _ = member.child.kill();
                        return Err(format!("the etcd it started never answered: {e}"));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
                if let Ok(Some(status)) = member.child.try_wait() {
                    return Err(format!(
                        "the etcd it started exited ({status}); see {}",
                        scratch.join("etcd.log").display()
                    ));
                }
            }
        }
    }

    use std::fs::File;

    impl Drop for Member {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
