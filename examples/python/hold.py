"""Hold one lock for a while, the way a job would: wait for it (saying so on stderr), say
``held <fence>`` on stdout, keep it for --hold-ms (refreshed meanwhile), release it and say
``released ok``. A lost lock ends it with the wrapper's error when the hold is over (exit 1).

    python hold.py --locks DIR --lock NAME [--hold-ms MS|inf] [--timeout-ms MS]
                   [--patience-ms MS|inf] [--label L]
"""

import argparse
import os
import sys
import time

from lockbydir import LockDir


def main() -> None:
    """Parse the arguments, take the lock, hold it, release it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--locks", required=True, help="the lock directory (made if missing)")
    p.add_argument("--lock", required=True, help="the lock's name")
    p.add_argument("--hold-ms", default="1000", help="how long to hold it (or inf)")
    p.add_argument("--timeout-ms", type=int, default=30_000)
    p.add_argument("--patience-ms", default="inf")
    p.add_argument("--label", default=f"python-hold-{os.getpid()}")
    arg = p.parse_args()

    def on_wait(holder):
        """Say that we wait, like lockbydir's own "blocking waiting" line."""
        by = f" held by `{holder.holder}` (fence {holder.fence})" if holder else ""
        print(f"hold.py: {arg.label} blocking waiting for lock `{arg.lock}`{by}",
              file=sys.stderr, flush=True)

    locks = LockDir(arg.locks, create=True)
    patience = None if arg.patience_ms == "inf" else int(arg.patience_ms)
    lock = locks.lock(arg.lock, timeout_ms=arg.timeout_ms, patience_ms=patience,
                      holder=arg.label, on_wait=on_wait)
    with lock as grant:
        print(f"held {grant.fence}", flush=True)
        if arg.hold_ms == "inf":
            while True:
                time.sleep(3600)
        time.sleep(int(arg.hold_ms) / 1000)
    print(f"released {'ok' if lock.fence is None else 'still-held'}", flush=True)


if __name__ == "__main__":
    main()
