"""Hammer one lock from Python, like the ``counter`` example plugin: each round takes the
lock, increments a shared counter file with a plain read-modify-write, appends its hold record
``<start-ns> <end-ns> <fence> <label>`` to a log, and releases the lock.

    python counter.py --locks DIR --lock NAME --counter FILE --log FILE [--rounds N]
                      [--label L] [--timeout-ms MS] [--component lock.wasm]

The lock directory and the folders of the counter and the log are made if missing; a missing
counter file counts as 0.
"""

import argparse
import os
import sys
import time

from lockbydir import DEFAULT_COMPONENT, LockDir


def main() -> None:
    """Parse the arguments and run the rounds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--locks", required=True, help="the lock directory")
    p.add_argument("--lock", required=True, help="the lock's name")
    p.add_argument("--counter", required=True, help="the shared counter file")
    p.add_argument("--log", required=True, help="where hold records are appended")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--label", default="python-counter")
    p.add_argument("--timeout-ms", type=int, default=30_000)
    p.add_argument("--component", default=DEFAULT_COMPONENT, help="the lock component")
    arg = p.parse_args()

    waited = False

    def on_wait(holder):
        """Say once per process that we wait, like lockbydir's own "blocking waiting" line."""
        nonlocal waited
        if not waited:
            waited = True
            by = f" held by `{holder.holder}` (fence {holder.fence})" if holder else ""
            print(f"counter.py: {arg.label} blocking waiting for lock `{arg.lock}`{by}",
                  file=sys.stderr, flush=True)

    for file in (arg.counter, arg.log):
        os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
    locks = LockDir(arg.locks, arg.component, create=True)
    lock = locks.lock(arg.lock, timeout_ms=arg.timeout_ms, holder=arg.label, on_wait=on_wait)
    for _ in range(arg.rounds):
        with lock as grant:
            start = time.time_ns()
            try:  # read under the lock, so that the first holder alone starts the count
                with open(arg.counter) as f:
                    text = f.read()
            except FileNotFoundError:
                text = "0"
            with open(arg.counter, "w") as f:
                f.write(str(int(text.strip()) + 1))
            end = time.time_ns()
            with open(arg.log, "a") as f:
                f.write(f"{start} {end} {grant.fence} {arg.label}\n")
    lock.close()


if __name__ == "__main__":
    main()
