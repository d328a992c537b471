//! Plugins in one host: many sandboxed plugin instances on threads hammer one lock through
//! the forwarded lock import.

mod common;

use common::{Scratch, assert_exclusive, count, guest};
use lockbydir::{Place, PluginConfig, PluginRunner, RuntimeBuilder};
use wasmtime::component::Component;

/// A plugin runner (with the tests' compiled-code cache) and the counter plugin.
fn counter_plugin() -> (PluginRunner, Component) {
    let runtime = RuntimeBuilder::new()
        .cache_dir(common::cache_dir())
        .build()
        .unwrap();
    let runner = PluginRunner::new(&runtime).unwrap();
    let component = runtime.load_plugin(&guest("counter.wasm")).unwrap();
    (runner, component)
}

#[test]
fn eight_plugin_instances_take_turns_on_one_lock() {
    const INSTANCES: usize = 8;
    const ROUNDS: usize = 25;
    let scratch = Scratch::new("plugins-hammer");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let (runner, component) = counter_plugin();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..INSTANCES)
            .map(|i| {
                let config = PluginConfig {
                    name: format!("counter-{i}"),
                    args: [
                        "--lock",
                        "shared",
                        "--counter",
                        "/work/counter",
                        "--log",
                        "/work/log",
                    ]
                    .map(String::from)
                    .into_iter()
                    .chain([
                        "--rounds".into(),
                        ROUNDS.to_string(),
                        "--label".into(),
                        format!("p{i}"),
                    ])
                    .collect(),
                    dirs: vec![(work.clone(), "/work".into())],
                    ..PluginConfig::new(format!("counter-{i}"), Place::LockDir(locks.clone()))
                };
                let (runner, component) = (&runner, &component);
                s.spawn(move || runner.run(component, &config))
            })
            .collect();
        for run in runs {
            assert_eq!(run.join().unwrap().unwrap(), 0, "a plugin failed");
        }
    });
    assert_eq!(count(&work.join("counter")), INSTANCES * ROUNDS);
    assert_exclusive(&work.join("log"), INSTANCES * ROUNDS);
    // The plugins never saw the lock directory; only the lockdir and the lock's (now empty)
    // queue directory are in it.
    let mut in_locks: Vec<_> = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    in_locks.retain(|n| n != "shared.queue");
    assert_eq!(in_locks, ["shared.lockdir"]);
    let queue = locks.join("shared.queue");
    assert!(
        !queue.exists() || std::fs::read_dir(&queue).unwrap().next().is_none(),
        "every waiter took its ticket back"
    );
}

#[test]
fn a_plugin_cannot_see_the_lock_directory() {
    let scratch = Scratch::new("plugins-sandbox");
    let locks = scratch.dir("locks");
    let work = scratch.dir("work");
    std::fs::write(work.join("counter"), "0").unwrap();
    let (runner, component) = counter_plugin();
    // Point the plugin's counter file at the lock directory's path: it is not granted.
    let config = PluginConfig {
        name: "snoop".into(),
        args: [
            "--lock",
            "x",
            "--counter",
            &format!("{}/counter", locks.display()),
            "--log",
            "/work/log",
            "--rounds",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        dirs: vec![(work.clone(), "/work".into())],
        ..PluginConfig::new("plugin", Place::LockDir(locks.clone()))
    };
    std::fs::write(locks.join("counter"), "0").unwrap();
    assert_eq!(
        runner.run(&component, &config).unwrap(),
        1,
        "the plugin must fail to read it"
    );
    assert_eq!(std::fs::read_to_string(locks.join("counter")).unwrap(), "0");
}
