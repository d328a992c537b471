// Hold one lock for a while, the way a job would: wait for it (saying so on stderr), say
// `held <fence>` on stdout, keep it for --hold-ms (refreshed meanwhile), release it and say
// `released ok`. A lost lock is said at once (`lost <fence>`, from grant.signal) and ends it
// with the wrapper's error when the hold is over (exit 1).
//
//   node hold.mjs --locks DIR --lock NAME [--hold-ms MS|inf] [--timeout-ms MS]
//                 [--patience-ms MS|inf] [--label L]

import { parseArgs } from 'node:util';
import { openLockDir } from './lockbydir.mjs';

const { values: arg } = parseArgs({
  options: {
    locks: { type: 'string' },
    lock: { type: 'string' },
    'hold-ms': { type: 'string', default: '1000' },
    'timeout-ms': { type: 'string', default: '30000' },
    'patience-ms': { type: 'string', default: 'inf' },
    label: { type: 'string', default: `node-hold-${process.pid}` },
  },
});
for (const key of ['locks', 'lock']) {
  if (!arg[key]) {
    console.error(`hold.mjs: --${key} is required`);
    process.exit(2);
  }
}
const ms = (text) => (text === 'inf' ? Infinity : Number(text));

const locks = await openLockDir(arg.locks, { create: true });
const lock = locks.lock(arg.lock, {
  timeoutMs: ms(arg['timeout-ms']),
  patienceMs: ms(arg['patience-ms']),
  holder: arg.label,
  onWait: (holder) =>
    console.error(
      `hold.mjs: ${arg.label} blocking waiting for lock \`${arg.lock}\`` +
        (holder ? ` held by \`${holder.holder}\` (fence ${holder.fence})` : ''),
    ),
});
let report;
await lock.withLock(async (grant) => {
  console.log(`held ${grant.fence}`);
  grant.signal.addEventListener('abort', () => console.log(`lost ${grant.fence}`));
  const hold = ms(arg['hold-ms']);
  // An `inf` hold waits on a timer that never fires but keeps the process alive.
  await new Promise((resolve) => setTimeout(resolve, hold === Infinity ? 2 ** 31 - 1 : hold));
  report = 'released';
});
console.log(`${report} ${lock.fence === undefined ? 'ok' : 'still-held'}`);
