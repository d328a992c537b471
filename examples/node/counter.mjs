// Hammer one lock from Node.js, like the `counter` example plugin: each round takes the lock,
// increments a shared counter file with a plain read-modify-write, appends its hold record
// `<start-ns> <end-ns> <fence> <label>` to a log, and releases the lock.
//
//   node counter.mjs --locks DIR --lock NAME --counter FILE --log FILE [--rounds N]
//                    [--label L] [--timeout-ms MS]
//
// The lock directory and the folders of the counter and the log are made if missing; a
// missing counter file counts as 0.

import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { openLockDir } from './lockbydir.mjs';

const { values: arg } = parseArgs({
  options: {
    locks: { type: 'string' },
    lock: { type: 'string' },
    counter: { type: 'string' },
    log: { type: 'string' },
    rounds: { type: 'string', default: '10' },
    label: { type: 'string', default: 'node-counter' },
    'timeout-ms': { type: 'string', default: '30000' },
  },
});
for (const key of ['locks', 'lock', 'counter', 'log']) {
  if (!arg[key]) {
    console.error(`counter.mjs: --${key} is required`);
    process.exit(2);
  }
}

// Hold records need wall-clock nanoseconds that agree with the other hosts' (Rust's
// SystemTime, `date +%s%N`, Python's time.time_ns()). Node only has Date.now() (milliseconds)
// and a monotonic process.hrtime; this finds the offset between them at the instant Date.now()
// ticks over. The tick lies between the hrtime read before the last Date.now() that still
// showed the old millisecond and the hrtime read after the first that showed the new one; the
// narrowest such bracket is kept (its error is at most half its width: a few microseconds).
function wallClockOffsetNs() {
  let best = null;
  for (let i = 0; i < 20 && !(best?.width < 20_000n); i++) {
    let lo = process.hrtime.bigint();
    const tick = Date.now();
    let now;
    for (;;) {
      const before = process.hrtime.bigint();
      now = Date.now();
      if (now !== tick) break;
      lo = before;
    }
    const hi = process.hrtime.bigint();
    const width = hi - lo;
    const offset = BigInt(now) * 1_000_000n - (lo + hi) / 2n;
    if (best === null || width < best.width) best = { width, offset };
  }
  return best.offset;
}
const offsetNs = wallClockOffsetNs();
const nowNs = () => process.hrtime.bigint() + offsetNs;

/** A file's text, or null if it does not exist. */
function readText(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
}

const label = arg.label;
for (const file of [arg.counter, arg.log]) mkdirSync(dirname(file), { recursive: true });
const locks = await openLockDir(arg.locks, { create: true });
let waited = false;
const lock = locks.lock(arg.lock, {
  timeoutMs: Number(arg['timeout-ms']),
  holder: label,
  // Said once per process, like lockbydir's own "blocking waiting" line.
  onWait: (holder) => {
    if (waited) return;
    waited = true;
    console.error(
      `counter.mjs: ${label} blocking waiting for lock \`${arg.lock}\`` +
        (holder ? ` held by \`${holder.holder}\` (fence ${holder.fence})` : ''),
    );
  },
});

for (let round = 0; round < Number(arg.rounds); round++) {
  await lock.withLock(async (grant) => {
    const start = nowNs();
    // Read under the lock, so that the first holder alone starts the count.
    const text = readText(arg.counter) ?? '0';
    const n = Number.parseInt(text.trim(), 10);
    if (!Number.isSafeInteger(n)) throw new Error(`${arg.counter} holds ${JSON.stringify(text)}`);
    writeFileSync(arg.counter, String(n + 1));
    const end = nowNs();
    appendFileSync(arg.log, `${start} ${end} ${grant.fence} ${label}\n`);
  });
}
lock.close();
