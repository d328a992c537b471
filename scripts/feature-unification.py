#!/usr/bin/env python3
"""Fail when `--features etcd` changes the features of a crate the default build has too.

Such a crate, and every crate above it (wasmtime among them), would be compiled twice: once
for README's `cargo test --release` and once for the etcd tests. The fix is to add the crate
with the printed features to workspace-hack/Cargo.toml. Compares `cargo tree` of the two
builds .ci/run makes (the default members; the CLI with `--features etcd`).
"""
import re
import subprocess
import sys

TARGET = subprocess.run(
    ["rustc", "--print", "host-tuple"], capture_output=True, text=True, check=True
).stdout.strip()


def features(args):
    cmd = ["cargo", "tree", "--locked", "-q", "--prefix", "none", "-f", "{p} [{f}]",
           "--target", TARGET] + args
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stderr}")
    out = run.stdout
    crates = {}
    for line in out.splitlines():
        m = re.match(r"(\S+ v\S+)(?: \([^)]*\))* \[([^\]]*)\]", line.strip())
        if m:
            crates.setdefault(m.group(1), set()).update(f for f in m.group(2).split(",") if f)
    return crates


default = features(["-p", "lockbydir-protocol", "-p", "lockbydir", "-p", "lockbydir-bench",
                    "-p", "lockbydir-cli"])
etcd = features(["-p", "lockbydir-cli", "--features", "etcd"])
differ = [
    (crate, sorted(etcd[crate] - default[crate]), sorted(default[crate] - etcd[crate]))
    for crate in sorted(etcd)
    if crate in default and etcd[crate] != default[crate] and not crate.startswith("lockbydir")
]
for crate, more, fewer in differ:
    print(f"{crate}: the etcd build adds features {more}, the default build {fewer}")
if differ:
    print(f"{len(differ)} shared crates are built with other features under --features etcd; "
          "add them to workspace-hack/Cargo.toml with those features", file=sys.stderr)
    sys.exit(1)
print(f"the default and the etcd build share {len(set(default) & set(etcd))} crates, "
      "each with the same features")
