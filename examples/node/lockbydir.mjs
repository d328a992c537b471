// A small promise-based wrapper around the lockbydir lock component, transpiled by jco.
//
// The component (`lockbydir component --out lock.wasm`) is transpiled into ./gen by
// `npm run transpile` (jco transpile --instantiation async). Each `openLockDir(dir)` call
// instantiates it once, with `dir` as its only preopened directory, mapped as ".".
//
//   import { openLockDir } from 'lockbydir';
//   const locks = await openLockDir('/var/lock/myapp');
//   const lock = locks.lock('db-migrate', { timeoutMs: 30_000, holder: 'migrator' });
//   await lock.withLock(async (grant) => { /* ... pass grant.fence to the resource ... */ });
//
// The full API, and what the wrapper does while waiting, holding and on signals, is in
// examples/README.md.

import { mkdirSync, statSync } from 'node:fs';
import { clocks } from '@bytecodealliance/preview2-shim';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { instantiate } from './gen/lock.js';

const U64_MAX = (1n << 64n) - 1n;

/**
 * How long each of the calls into the component that make up a wait lasts (ms). The
 * component's own `acquire` waits in line in the lock's fair queue, but under jco it blocks
 * the event loop while it does; so a wait is a series of `acquire` calls with a turn of the
 * event loop (timers, I/O, signals) between two of them. A call that runs out keeps the
 * handle's queue ticket, so the next call goes on waiting in the same place in line.
 */
export const WAIT_SLICE_MS = 250;
/** The longest one call into the component waits (ms): the same (slices do not grow). */
export const WAIT_SLICE_MAX_MS = 250;

/** A call into the lock component failed: `code` is the WIT error's case, `payload` its value. */
export class LockError extends Error {
  /**
   * @param {{tag: string, val?: unknown}} error the WIT `error` variant, as jco gives it
   * @param {ErrorOptions} [options] `cause`: an error of the body that ran under the lock
   */
  constructor(error, options) {
    super(describe(error), options);
    this.name = 'LockError';
    /** `invalid-name`, `invalid-option`, `io`, `not-held`, `compromised`, `already-held`, ... */
    this.code = error.tag;
    /** The case's payload (a string, an io-error record, a compromise record), if any. */
    this.payload = error.val;
  }
}

/** `acquire` ran out of patience. `holder` is who held the lock when it gave up, if known. */
export class LockBusyError extends Error {
  /** @param {string} name the lock's name @param {object | undefined} holder its holder-info */
  constructor(name, holder) {
    const by = holder ? ` (held by \`${holder.holder}\`, fence ${holder.fence})` : '';
    super(`lock \`${name}\` is busy${by}`);
    this.name = 'LockBusyError';
    this.holder = holder;
  }
}

/** The lock directory cannot be used (missing, not a directory, not accessible). */
export class LockDirError extends Error {
  /** @param {string} dir the path @param {string} why what is wrong and what to do */
  constructor(dir, why) {
    super(`lock directory ${dir} cannot be used: ${why}`);
    this.name = 'LockDirError';
    this.dir = dir;
  }
}

/** A one-line description of a WIT `error`; cases this wrapper does not know are named. */
function describe(error) {
  switch (error.tag) {
    case 'io':
      return `${error.val.operation} \`${error.val.path}\` failed: ${error.val.message}`;
    case 'compromised': {
      const by = error.val.nowHeldBy;
      const now = by ? ` by \`${by.holder}\` (fence ${by.fence})` : '';
      return `compromised: the lock (fence ${error.val.fence}) was taken over${now}`;
    }
    default:
      if (error.val === undefined) return error.tag;
      if (typeof error.val === 'object') return `${error.tag}: ${JSON.stringify(error.val, big)}`;
      return `${error.tag}: ${error.val}`;
  }
}

/** JSON.stringify replacer for BigInt values. */
const big = (_, v) => (typeof v === 'bigint' ? v.toString() : v);

/** Run one component call, turning a WIT `error` (jco's ComponentError) into a LockError. */
function call(f) {
  try {
    return f();
  } catch (e) {
    if (e && typeof e === 'object' && 'payload' in e && e.payload?.tag) {
      throw new LockError(e.payload);
    }
    throw e;
  }
}

/** u64 option from a number (Infinity means "forever"). */
function u64(value) {
  if (value === Infinity) return U64_MAX;
  return BigInt(Math.max(0, Math.floor(value)));
}

/** One turn of the event loop: timers, I/O callbacks and signal handlers run. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

// wasi:clocks/wall-clock for the component. The shim's own (0.26.1) reads Date.now() twice,
// once for the seconds and once for the milliseconds, so across a second boundary it can
// return a time almost a second early (S.000 instead of S+1.000); a deadline computed from it
// would be that much early. This reads the clock once. Milliseconds are all the protocol uses.
const wallClock = {
  now() {
    const ms = Date.now();
    return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1_000_000 };
  },
  resolution() {
    return { seconds: 0n, nanoseconds: 1_000_000 };
  },
};

// wasi:clocks/monotonic-clock for the component: the shim's, except for short sleeps. The
// shim (0.26.1) makes a timer shorter than 10 ms spin: its I/O worker thread re-queues a
// setImmediate until the instant has come, burning a core. So a sleep under 10 ms is done
// here, blocking this thread in Atomics.wait (as the shim's own synchronous calls do), and the
// component gets a pollable that is already ready. Such a sleep lasts at least MIN_SLEEP_MS:
// every look the component takes costs about 1 ms of CPU through jco and the shim, so a
// waiter first in line, which looks every 200 µs natively, looks every 5 ms here (it used
// about 75 % of a core with the shim's timers, about 18 % this way).
const SPIN_BELOW_NS = 10_000_000n;
const MIN_SLEEP_MS = 5;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const monotonicClock = {
  ...clocks.monotonicClock,
  subscribeDuration(duration) {
    const ns = BigInt(duration);
    if (ns > 0n && ns < SPIN_BELOW_NS) {
      Atomics.wait(sleeper, 0, 0, Math.max(MIN_SLEEP_MS, Number(ns) / 1e6));
      return clocks.monotonicClock.subscribeDuration(0n);
    }
    return clocks.monotonicClock.subscribeDuration(ns);
  },
};

/** Check that `dir` is a usable directory (making it first with `create`). */
function checkDir(dir, create) {
  if (create) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new LockDirError(dir, `it cannot be created (${e.code ?? e.message})`);
    }
  }
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    const what =
      e.code === 'ENOENT'
        ? 'it does not exist (create it first, for example `mkdir -p DIR`, or pass { create: true })'
        : `${e.code ?? e.message} (check the path and its permissions)`;
    throw new LockDirError(dir, what.replace('DIR', dir));
  }
  if (!st.isDirectory()) throw new LockDirError(dir, 'it is not a directory');
}

/**
 * Instantiate the lock component with `dir` as its lock directory. Each instance has its own
 * WASI shim whose only preopen is `dir` (as "."): no environment, no network. Options:
 * `create` (false): make the directory (and its parents) if it is missing.
 */
export async function openLockDir(dir, options = {}) {
  checkDir(dir, options.create ?? false);
  const shim = new WASIShim({
    clocks: { ...clocks, monotonicClock, wallClock },
    sandbox: { preopens: { '.': dir }, env: {}, args: ['lockbydir'], enableNetwork: false },
  });
  // Preopens are read once, when the component first touches the filesystem: they are fixed
  // here, before instantiation.
  const exports = await instantiate(undefined, shim.getImportObject());
  return new LockDir(dir, exports.lock);
}

/** One lock directory, seen through one instance of the lock component. */
export class LockDir {
  #api;

  /** Made by `openLockDir`: the directory and the instance's `lockbydir:lock/lock` exports. */
  constructor(dir, api) {
    /** The host path of the lock directory. */
    this.dir = dir;
    this.#api = api;
  }

  /**
   * A handle on lock `name`. Options (all optional): `timeoutMs` (30 000), `patienceMs`
   * (Infinity), `minPollMs` (1), `maxPollMs` (50), `maxClockSkewMs` (0), `holder` (a label,
   * default `node-<pid>`), and `onWait(holder)`, called when an `acquire` finds the lock busy
   * and starts waiting (`holder` is the holder-info seen, or undefined).
   */
  lock(name, options = {}) {
    const o = {
      timeoutMs: options.timeoutMs ?? 30_000,
      patienceMs: options.patienceMs ?? Infinity,
      minPollMs: options.minPollMs ?? 1,
      maxPollMs: options.maxPollMs ?? 50,
      maxClockSkewMs: options.maxClockSkewMs ?? 0,
      holder: options.holder ?? `node-${process.pid}`,
    };
    const open = (patienceMs) =>
      call(() =>
        this.#api.Lock.open(name, {
          leaseMs: u64(o.timeoutMs),
          waitMs: u64(patienceMs),
          holder: o.holder,
          tuning: {
            minPollMs: u64(o.minPollMs),
            maxPollMs: u64(o.maxPollMs),
            maxClockSkewMs: u64(o.maxClockSkewMs),
          },
        }),
      );
    return new Lock(open, o, options.onWait);
  }

  /**
   * Every lock in the directory: `[{ name, state: { tag, val } }]`, sorted by name. A lock
   * whose lockdir cannot be read has `state: { tag: 'broken', val: <the lock error> }`.
   */
  list() {
    return call(() => this.#api.listLocks()).map(({ name, state }) => ({
      name,
      state: state.tag === 'ok' ? state.val : { tag: 'broken', val: state.val },
    }));
  }

  /** The component's wall clock, in milliseconds since the epoch (a BigInt). */
  nowMs() {
    return this.#api.nowMs();
  }
}

// --- Exits and signals -------------------------------------------------------------------
//
// Locks this process holds, and how many waits are under way. While either is non-zero, a
// SIGINT, SIGTERM or SIGHUP that nobody else listens for releases every held lock and then ends the
// process by the same signal (as Node's default would); a normal exit, `process.exit()` and
// an uncaught exception release them in the 'exit' event. SIGKILL cannot be caught: the lock
// then frees itself at its deadline.

const holding = new Set();
/** Locks whose wait is under way: a slice that ran out keeps its place in line. */
const waiting = new Set();
// SIGHUP too: Node resets an ignored SIGHUP (nohup) to the default at startup anyway.
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Release every lock still held (best effort: the process is going away). */
function releaseAll() {
  for (const lock of [...waiting]) lock.leaveQueue();
  for (const lock of [...holding]) {
    try {
      lock.release();
    } catch {
      // compromised or not-held: nothing is left to give back.
    }
  }
}

/** SIGINT/SIGTERM/SIGHUP while holding or waiting: release, then die of the signal. */
function onSignal(signal) {
  // Someone else listens too: they decide what the signal means (if they exit, the 'exit'
  // hook below releases).
  if (process.listenerCount(signal) > 1) return;
  releaseAll();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  listening = false;
  process.kill(process.pid, signal);
}

process.on('exit', releaseAll);

let listening = false;

/** Listen for SIGINT/SIGTERM/SIGHUP exactly while some lock is held or waited for. */
function listen() {
  const want = holding.size + waiting.size > 0;
  if (want === listening) return;
  for (const s of SIGNALS) want ? process.on(s, onSignal) : process.removeListener(s, onSignal);
  listening = want;
}

/** One named lock, as used by one holder. */
export class Lock {
  #open;
  #handle;
  #handlePatience;
  #options;
  #onWait;
  #refresher = null;
  #lost = null;
  #abort = null;

  /** Made by `LockDir.lock`: a function that opens component handles, options, wait callback. */
  constructor(open, options, onWait) {
    this.#open = open;
    this.#options = options;
    this.#onWait = onWait;
    this.#handlePatience = Math.min(WAIT_SLICE_MS, options.patienceMs);
    this.#handle = open(this.#handlePatience);
  }

  /** The lock's name. */
  get name() {
    return this.#handle.name();
  }

  /** The fencing token this handle holds (a BigInt), or undefined. */
  get fence() {
    return this.#handle.fence();
  }

  /** The LockError('compromised') a refresh met while this lock was held, or null. */
  get lost() {
    return this.#lost;
  }

  /**
   * Wait until the lock is ours; resolves to the grant `{ fence, deadlineMs, tookOver, signal }`
   * (`signal`: an AbortSignal aborted if the lock is lost while held). Rejects with
   * LockBusyError once `patienceMs` has passed, with LockError on failure.
   *
   * The wait is the component's own: it queues in the lock's fair queue like every other
   * waiter. It runs as calls of WAIT_SLICE_MS growing to WAIT_SLICE_MAX_MS (each one blocks
   * the event loop), with a turn of the event loop between them. A slice that runs out keeps
   * its queue ticket; the next one goes on waiting in the same place.
   */
  async acquire() {
    if (holding.has(this)) throw new LockError({ tag: 'already-held' });
    let outcome = call(() => this.#handle.tryAcquire());
    if (outcome.tag !== 'acquired') {
      const { patienceMs } = this.#options;
      const start = performance.now();
      waiting.add(this);
      listen();
      if (patienceMs > 0 && this.#onWait) this.#onWait(outcome.val);
      try {
        for (let slice = WAIT_SLICE_MS; ; slice = Math.min(2 * slice, WAIT_SLICE_MAX_MS)) {
          const left = patienceMs - (performance.now() - start);
          if (left <= 0) throw new LockBusyError(this.name, outcome.val);
          await turn();
          this.#patience(Math.min(slice, Math.ceil(left)));
          outcome = call(() => this.#handle.acquire());
          if (outcome.tag === 'acquired') break;
        }
      } finally {
        waiting.delete(this);
        // A wait that did not get the lock (patience, an error) gives its place in line back.
        if (outcome.tag !== 'acquired') this.leaveQueue();
        listen();
      }
    }
    return this.#hold(outcome.val);
  }

  /** One attempt that never waits: the grant, or null if someone else holds the lock. */
  tryAcquire() {
    if (holding.has(this)) throw new LockError({ tag: 'already-held' });
    const outcome = call(() => this.#handle.tryAcquire());
    return outcome.tag === 'acquired' ? this.#hold(outcome.val) : null;
  }

  /** Extend the deadline by the timeout, from now; returns the new deadline (ms, BigInt). */
  refresh() {
    if (this.#lost) throw this.#lost;
    return call(() => this.#handle.refresh());
  }

  /**
   * Give the lock up: 'in-time' or 'late'. Throws LockError('compromised') if it was taken
   * over meanwhile (found at release or by an earlier automatic refresh).
   */
  release() {
    this.#stopHolding();
    const lost = this.#lost;
    this.#lost = null;
    if (lost) throw lost;
    return call(() => this.#handle.release());
  }

  /** The lock's state now: `{ tag: 'absent' | 'free' | 'held' | 'expired', val }`. */
  inspect() {
    return call(() => this.#handle.inspect());
  }

  /**
   * Acquire, run `fn(grant)`, and release in `finally`, even if `fn` throws. Resolves to what
   * `fn` returned. If the lock was lost meanwhile, rejects with LockError('compromised') even
   * when `fn` succeeded (its error, if any, is the `cause`); `grant.signal` is aborted at the
   * moment the loss is seen, so `fn` can stop early.
   */
  async withLock(fn) {
    const grant = await this.acquire();
    let failed = false;
    let failure;
    try {
      return await fn(grant);
    } catch (e) {
      failed = true;
      failure = e;
      throw e;
    } finally {
      try {
        this.release();
      } catch (e) {
        if (e instanceof LockError && e.code === 'compromised' && failed) e.cause = failure;
        // A lost lock outweighs the body's own error: whatever the body did may not have
        // been protected.
        // eslint-disable-next-line no-unsafe-finally
        throw e;
      }
    }
  }

  /**
   * Give back the place in line that a wait kept (a slice that runs out keeps the handle's
   * queue ticket, so the next slice waits on in the same place): the handle is replaced by a
   * fresh one. `acquire` does this itself when it gives up, and so does a signal or an exit.
   */
  leaveQueue() {
    if (holding.has(this)) return;
    const next = this.#open(this.#handlePatience);
    this.#handle[Symbol.dispose ?? Symbol.for('dispose')]?.();
    this.#handle = next;
  }

  /** Drop the component's handle (releasing the lock if this handle holds it). */
  close() {
    this.#stopHolding();
    this.#handle[Symbol.dispose ?? Symbol.for('dispose')]?.();
  }

  /** Use a handle whose patience is `ms` (opening a new one if it differs; not while held). */
  #patience(ms) {
    if (ms === this.#handlePatience) return;
    const next = this.#open(ms);
    this.#handle[Symbol.dispose ?? Symbol.for('dispose')]?.();
    this.#handle = next;
    this.#handlePatience = ms;
  }

  /** The lock is ours: refresh it every third of the timeout until it is released. */
  #hold(grant) {
    this.#lost = null;
    this.#abort = new AbortController();
    holding.add(this);
    listen();
    const every = Math.max(1, Math.floor(this.#options.timeoutMs / 3));
    // Unref'd: the refresher alone does not keep the process alive (the 'exit' hook releases).
    this.#refresher = setInterval(() => this.#refreshNow(), every).unref();
    return { ...grant, signal: this.#abort.signal };
  }

  /** One automatic refresh. A lock found lost stops the refresher and aborts the signal. */
  #refreshNow() {
    try {
      call(() => this.#handle.refresh());
    } catch (e) {
      if (e instanceof LockError && (e.code === 'compromised' || e.code === 'not-held')) {
        this.#lost = e.code === 'compromised' ? e : this.#lost;
        clearInterval(this.#refresher);
        this.#refresher = null;
        this.#abort?.abort(e);
      }
      // Other errors (io): try again at the next tick; release says how it ended.
    }
  }

  /** Stop refreshing and forget that this lock is held. */
  #stopHolding() {
    if (this.#refresher) clearInterval(this.#refresher);
    this.#refresher = null;
    if (holding.delete(this)) listen();
  }
}
