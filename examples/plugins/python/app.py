"""Hammer one lock from Python: each round takes it, increments a shared counter file with a
plain read-modify-write, records the hold interval, and releases it.

counter --lock NAME --counter FILE --log FILE [--rounds N] [--label L] [--timeout-ms MS]

Each log line: <start-ns> <end-ns> <fence> <label>
"""

import sys
import time

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.lock import Lock

USAGE = "counter --lock NAME --counter FILE --log FILE [--rounds N] [--label L] [--timeout-ms MS]"


def fail(why: str) -> None:
    print(f"counter: {why}", file=sys.stderr)
    raise Err(None)


def arguments() -> dict:
    args = sys.argv[1:]
    if len(args) % 2 or not all(a.startswith("--") for a in args[::2]):
        fail(f"usage: {USAGE}")
    return {k[2:]: v for k, v in zip(args[::2], args[1::2])}


class Run(exports.Run):
    def run(self) -> None:
        arg = arguments()
        if not all(k in arg for k in ("lock", "counter", "log")):
            fail("--lock, --counter and --log are required")
        rounds = int(arg.get("rounds", "10"))
        label = arg.get("label", "counter")
        options = types.Options(
            lease_ms=int(arg.get("timeout-ms", "30000")),
            wait_ms=None,
            holder=label,
            fairness=None,
            tuning=None,
        )
        try:
            lock = Lock.open(arg["lock"], options)
            for _ in range(rounds):
                outcome = lock.acquire()
                if not isinstance(outcome, types.AcquireOutcome_Acquired):
                    fail("gave up waiting, with unlimited patience")
                fence = outcome.value.fence
                start = time.time_ns()
                with open(arg["counter"]) as f:
                    n = int(f.read().strip())
                with open(arg["counter"], "w") as f:
                    f.write(str(n + 1))
                end = time.time_ns()
                with open(arg["log"], "a") as f:
                    f.write(f"{start} {end} {fence} {label}\n")
                lock.release()
        except Err as e:
            if e.value is None:
                raise
            fail(f"lock {arg['lock']!r}: {e.value}")
