"""Run a WASI 0.2 command component on wasmtime-py, a host that knows nothing of lockbydir.

    python run.py PLUGIN.wasm [--dir HOST::GUEST]... [-- ARGS...]

Each --dir preopens directory HOST as GUEST for the plugin. The exit status is 0 if the
plugin's `run` returned ok, 1 if it returned an error.
"""

import sys

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    plugin, rest = argv[0], argv[1:]
    dirs, args = [], []
    while rest:
        flag = rest.pop(0)
        if flag == "--":
            args = rest
            break
        if flag != "--dir" or not rest or "::" not in rest[0]:
            print(f"run.py: expected --dir HOST::GUEST or --, got {flag!r}", file=sys.stderr)
            return 2
        dirs.append(rest.pop(0).split("::", 1))

    engine = Engine()
    component = Component.from_file(engine, plugin)
    runs = [n for n in component.type.exports(engine) if n.startswith("wasi:cli/run@0.2.")]
    if not runs:
        print(f"run.py: {plugin} exports no wasi:cli/run: not a WASI 0.2 command", file=sys.stderr)
        return 2

    linker = Linker(engine)
    linker.add_wasip2()
    store = Store(engine)
    wasi = WasiConfig()
    wasi.argv = [plugin, *args]
    for host, guest in dirs:
        wasi.preopen_dir(host, guest)
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    instance = linker.instantiate(store, component)
    iface = instance.get_export_index(store, runs[0])
    run = instance.get_func(store, instance.get_export_index(store, "run", iface))
    # `run` returns result<_, _>: wasmtime-py gives Variant("ok") or Variant("err").
    return 0 if run(store).tag == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
