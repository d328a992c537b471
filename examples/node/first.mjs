// Take lock `nightly` in the lock directory named on the command line, work under it, let it go.
import { openLockDir } from './lockbydir.mjs';

const locks = await openLockDir(process.argv[2], { create: true });
const lock = locks.lock('nightly', { timeoutMs: 30_000, holder: 'node-job' });
await lock.withLock(async (grant) => {
  // The work; grant.fence is a BigInt; grant.signal aborts if the lock is lost meanwhile.
  console.log(`holding lock nightly with fence ${grant.fence}`);
});
lock.close();
