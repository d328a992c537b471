#!/usr/bin/env python3
"""Report import circles among the modules of a Rust crate.

Usage: scripts/module-cycles.py CRATE_SRC_DIR [ROOT_FILE]

Every `crate::a::b`, `super::x` and `self::x` path in a module's file is an edge to the
longest module it names. Edges between a module and its own ancestors or descendants are
allowed (a parent and its submodules), so they are left out; every other circle (a strongly
connected component of more than one module) is printed, and the exit code is 1 if any is
found. Generated bindings (`bindgen!`) and test modules (`#[cfg(test)] mod tests`) are
read as the rest of their file.
"""
import os
import re
import sys


def modules(src, root):
    """Map module path (tuple) -> file."""
    found = {(): os.path.join(src, root)}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                continue
            if rel[-1] == "mod":
                rel = rel[:-1]
            found[tuple(rel)] = full
    return found


def edges(mods):
    out = {m: set() for m in mods}
    path_re = re.compile(r"\b(crate|super|self)((?:::[a-zA-Z_][a-zA-Z0-9_]*)+)")
    for m, file in mods.items():
        text = open(file, encoding="utf-8").read()
        # Drop comments (docs mention paths that are not imports).
        text = re.sub(r"//[^\n]*", "", text)
        # Expand `use x::{a, b::c}` one level so each item is a path.
        def expand(mt):
            base, items = mt.group(1), mt.group(2)
            return " ".join(f"{base}::{i.strip()}" for i in items.split(",") if i.strip())
        for _ in range(3):
            text = re.sub(r"\b((?:crate|super|self)(?:::[a-zA-Z_][a-zA-Z0-9_]*)*)::\{([^{}]*)\}", expand, text)
        for start, rest in path_re.findall(text):
            parts = [p for p in rest.split("::") if p]
            if start == "crate":
                base = []
            elif start == "self":
                base = list(m)
            else:
                base = list(m[:-1])
                while parts and parts[0] == "super":
                    parts.pop(0)
                    base = base[:-1]
            target = tuple(base + parts)
            while target not in mods and target:
                target = target[:-1]
            if target == m:
                continue
            related = target[: len(m)] == m or m[: len(target)] == target
            if not related:
                out[m].add(target)
    return out


def sccs(graph):
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            result.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return [c for c in result if len(c) > 1]


def main():
    src = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else ("lib.rs" if os.path.exists(os.path.join(src, "lib.rs")) else "main.rs")
    mods = modules(src, root)
    graph = edges(mods)
    name = lambda m: "crate" + "".join("::" + p for p in m)
    circles = sccs(graph)
    for c in circles:
        members = sorted(name(m) for m in c)
        print(f"{src}: import circle among {len(members)} modules: " + ", ".join(members))
        for m in sorted(c):
            for t in sorted(graph[m]):
                if t in c:
                    print(f"    {name(m)} -> {name(t)}")
    if not circles:
        print(f"{src}: no import circle among {len(mods)} modules (parent-submodule edges aside)")
    return 1 if circles else 0


if __name__ == "__main__":
    sys.exit(main())
