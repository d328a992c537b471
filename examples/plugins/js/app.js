// Hammer one lock from JavaScript: each round takes it, increments a shared counter file with a
// plain read-modify-write, records the hold interval, and releases it.
//
// counter --lock NAME --counter FILE --log FILE [--rounds N] [--label L] [--timeout-ms MS]
//
// Each log line: <start-ns> <end-ns> <fence> <label>

import { Lock } from 'lockbydir:lock/lock@0.2.0';
import { getArguments } from 'wasi:cli/environment@0.2.12';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { now } from 'wasi:clocks/wall-clock@0.2.12';

const USAGE =
  'counter --lock NAME --counter FILE --log FILE [--rounds N] [--label L] [--timeout-ms MS]';

class Failure extends Error {}

function fail(why) {
  throw new Failure(why);
}

function args() {
  const list = getArguments().slice(1);
  const out = {};
  for (let i = 0; i < list.length; i += 2) {
    if (!list[i].startsWith('--') || i + 1 >= list.length) fail(`usage: ${USAGE}`);
    out[list[i].slice(2)] = list[i + 1];
  }
  return out;
}

// The preopened directory that holds `path`, and the path inside it.
function locate(path) {
  for (const [dir, at] of getDirectories()) {
    const prefix = at.endsWith('/') ? at : `${at}/`;
    if (path.startsWith(prefix)) return [dir, path.slice(prefix.length)];
  }
  fail(`${path} is in no directory this plugin was given (--dir)`);
}

function open(path, openFlags, flags) {
  const [dir, inside] = locate(path);
  try {
    return dir.openAt({}, inside, openFlags, flags);
  } catch (e) {
    fail(`open ${path}: ${e.payload ?? e}`);
  }
}

function readText(path) {
  const file = open(path, {}, { read: true });
  let text = '';
  let offset = 0n;
  for (;;) {
    const [bytes, end] = file.read(4096n, offset);
    text += new TextDecoder().decode(bytes);
    offset += BigInt(bytes.length);
    if (end || bytes.length === 0) return text;
  }
}

function writeText(path, text) {
  const file = open(path, { create: true, truncate: true }, { write: true });
  file.write(new TextEncoder().encode(text), 0n);
}

function appendLine(path, line) {
  const file = open(path, { create: true }, { write: true });
  const stream = file.appendViaStream();
  stream.blockingWriteAndFlush(new TextEncoder().encode(`${line}\n`));
}

function nowNs() {
  const { seconds, nanoseconds } = now();
  return seconds * 1_000_000_000n + BigInt(nanoseconds);
}

function describe(e) {
  return `${e.payload?.tag ?? e}${e.payload?.val !== undefined ? `: ${JSON.stringify(e.payload.val, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}` : ''}`;
}

function hammer() {
  const arg = args();
  if (!arg.lock || !arg.counter || !arg.log) fail('--lock, --counter and --log are required');
  const rounds = Number(arg.rounds ?? '10');
  const label = arg.label ?? 'counter';
  let lock;
  try {
    lock = Lock.open(arg.lock, {
      leaseMs: BigInt(arg['timeout-ms'] ?? '30000'),
      holder: label,
    });
  } catch (e) {
    fail(`lock ${arg.lock}: ${describe(e)}`);
  }
  for (let i = 0; i < rounds; i++) {
    let outcome;
    try {
      outcome = lock.acquire();
    } catch (e) {
      fail(`lock ${arg.lock}: ${describe(e)}`);
    }
    if (outcome.tag !== 'acquired') fail('gave up waiting, with unlimited patience');
    const fence = outcome.val.fence;
    const start = nowNs();
    const text = readText(arg.counter);
    const n = Number.parseInt(text.trim(), 10);
    if (Number.isNaN(n)) fail(`${arg.counter} holds ${JSON.stringify(text)}`);
    writeText(arg.counter, String(n + 1));
    const end = nowNs();
    appendLine(arg.log, `${start} ${end} ${fence} ${label}`);
    try {
      lock.release();
    } catch (e) {
      fail(`lock ${arg.lock}: ${describe(e)}`);
    }
  }
}

export const run = {
  run() {
    try {
      hammer();
    } catch (e) {
      console.error(`counter: ${e instanceof Failure ? e.message : e}`);
      throw e;
    }
  },
};
