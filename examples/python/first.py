"""Take lock `nightly` in the lock directory named on the command line, work under it, let it go."""

import sys

from lockbydir import LockDir

locks = LockDir(sys.argv[1], create=True)
with locks.lock("nightly", timeout_ms=30_000, holder="py-job") as grant:
    # The work; grant.fence for whatever checks fences.
    print(f"holding lock nightly with fence {grant.fence}")
