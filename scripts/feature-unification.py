#!/usr/bin/env python3
"""Fail when another build of the workspace changes the features of a crate the default
build has too: the etcd build (`-p lockbydir-cli --features etcd`) or the embedding example
built alone (`-p lockbydir-embed-example`, as tests/embed.rs does).

Such a crate, and every crate above it (wasmtime among them), would be compiled twice. The
fix is to add the crate with the printed features to workspace-hack/Cargo.toml. Compares
`cargo tree` of the builds.
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
others = {
    "the etcd build": features(["-p", "lockbydir-cli", "--features", "etcd"]),
    "the embedding example's build": features(["-p", "lockbydir-embed-example", "-e",
                                               "normal,build"]),
}
failed = False
for name, other in others.items():
    differ = [
        (crate, sorted(other[crate] - default[crate]), sorted(default[crate] - other[crate]))
        for crate in sorted(other)
        if crate in default and other[crate] != default[crate]
        and not crate.startswith("lockbydir")
    ]
    for crate, more, fewer in differ:
        print(f"{crate}: {name} adds features {more}, the default build {fewer}")
    if differ:
        print(f"{len(differ)} shared crates are built with other features in {name}; "
              "add them to workspace-hack/Cargo.toml with the union of those features",
              file=sys.stderr)
        failed = True
    else:
        print(f"the default build and {name} share {len(set(default) & set(other))} crates, "
              "each with the same features")
sys.exit(1 if failed else 0)
