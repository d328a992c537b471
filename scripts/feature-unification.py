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
    """Each crate's features in a build, apart for its two kinds of instance: `target` (linked
    into the programs) and `host` (built for build scripts and proc-macros, which resolver 2
    gives features of their own). A crate of either kind whose features differ between two
    builds is compiled twice, and so is everything built on it."""
    cmd = ["cargo", "tree", "--locked", "-q", "-e", "normal,build", "-f", "{p} [{f}]",
           "--target", TARGET] + args
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stderr}")
    crates = {}
    # (depth, host) of the nodes above the current line; which section the children of the
    # node at each depth are in (normal or build-dependencies).
    stack, build_section = [], {}
    for line in run.stdout.splitlines():
        body = line.lstrip("│├└─ \u00a0")
        depth = (len(line) - len(body)) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        for d in [d for d in build_section if d >= depth + 1]:
            del build_section[d]
        if body.startswith("["):
            # A section header for the children of the node above it.
            build_section[depth] = body.startswith("[build-dependencies]")
            continue
        m = re.match(r"(\S+ v\S+)(?: \([^)]*\))* \[([^\]]*)\]", body)
        if not m:
            continue
        parent_host = stack[-1][1] if stack else False
        host = parent_host or build_section.get(depth, False)
        kind = "host" if host else "target"
        crates.setdefault((m.group(1), kind), set()).update(f for f in m.group(2).split(",") if f)
        # A proc-macro runs in the compiler: it and everything below it are host crates.
        stack.append((depth, host or "(proc-macro)" in body))
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
        and not crate[0].startswith("lockbydir")
    ]
    for (crate, kind), more, fewer in differ:
        print(f"{crate} ({kind}): {name} adds features {more}, the default build {fewer}")
    if differ:
        print(f"{len(differ)} shared crates are built with other features in {name}; "
              "add them to workspace-hack/Cargo.toml with the union of those features",
              file=sys.stderr)
        failed = True
    else:
        print(f"the default build and {name} share {len(set(default) & set(other))} crates, "
              "each with the same features")
sys.exit(1 if failed else 0)
