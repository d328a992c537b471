// A small promise-based wrapper around the lockbydir lock component, transpiled by jco.
//
// The component (`lockbydir component --out lock.wasm`) is transpiled into ./gen by
// `npm run transpile` (jco transpile --instantiation async). Each `openLockDir(dir)` call
// instantiates it once, with `dir` as its only preopened directory, mapped as ".".
//
//   import { openLockDir } from './lockbydir.mjs';
//   const locks = await openLockDir('/var/lock/myapp');
//   const lock = locks.lock('db-migrate', { timeoutMs: 30_000, holder: 'migrator' });
//   await lock.withLock(async (grant) => { /* ... pass grant.fence to the resource ... */ });

import { clocks } from '@bytecodealliance/preview2-shim';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { instantiate } from './gen/lock.js';

const U64_MAX = (1n << 64n) - 1n;

/** A call into the lock component failed: `code` is the WIT error's case, `payload` its value. */
export class LockError extends Error {
  /** @param {{tag: string, val?: unknown}} error the WIT `error` variant, as jco gives it */
  constructor(error) {
    super(describe(error));
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

/** A one-line description of a WIT `error`. */
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
      return error.val === undefined ? error.tag : `${error.tag}: ${error.val}`;
  }
}

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

/** A promise resolved after `ms` milliseconds. */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

/**
 * Instantiate the lock component with `dir` as its lock directory. Each instance has its own
 * WASI shim whose only preopen is `dir` (as "."): no environment, no network.
 */
export async function openLockDir(dir) {
  const shim = new WASIShim({
    clocks: { ...clocks, wallClock },
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
    const handle = call(() =>
      this.#api.Lock.open(name, {
        timeoutMs: u64(o.timeoutMs),
        patienceMs: u64(o.patienceMs),
        minPollMs: u64(o.minPollMs),
        maxPollMs: u64(o.maxPollMs),
        maxClockSkewMs: u64(o.maxClockSkewMs),
        holder: o.holder,
      }),
    );
    return new Lock(handle, o, options.onWait);
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

/** One named lock, as used by one holder. */
export class Lock {
  #handle;
  #options;
  #onWait;

  /** Made by `LockDir.lock`: the component's handle, the options, the wait callback. */
  constructor(handle, options, onWait) {
    this.#handle = handle;
    this.#options = options;
    this.#onWait = onWait;
  }

  /** The lock's name. */
  get name() {
    return this.#handle.name();
  }

  /** The fencing token this handle holds (a BigInt), or undefined. */
  get fence() {
    return this.#handle.fence();
  }

  /**
   * Wait until the lock is ours; resolves to the grant `{ fence, deadlineMs, tookOver }`.
   * Rejects with LockBusyError once `patienceMs` has passed, with LockError on failure.
   *
   * The component's own `acquire` would sleep inside WebAssembly, and jco's shim makes that
   * a blocking call that freezes the event loop. So this makes one `tryAcquire` at a time and
   * waits between tries with timers, by the component's rule: until the holder's stored
   * deadline or the backoff (minPollMs doubling to maxPollMs, jittered), whichever is first.
   */
  async acquire() {
    const { patienceMs, minPollMs, maxPollMs, maxClockSkewMs } = this.#options;
    const start = performance.now();
    let backoff = Math.max(1, minPollMs);
    let told = false;
    for (;;) {
      const outcome = call(() => this.#handle.tryAcquire());
      if (outcome.tag === 'acquired') return outcome.val;
      const holder = outcome.val;
      const left = patienceMs - (performance.now() - start);
      if (left <= 0) throw new LockBusyError(this.name, holder);
      if (!told && this.#onWait) this.#onWait(holder);
      told = true;
      let pause = Math.max(1, backoff / 2 + Math.random() * (backoff / 2));
      if (holder) {
        const takeoverAt = Number(holder.deadlineMs) + maxClockSkewMs + 1;
        pause = Math.min(pause, Math.max(1, takeoverAt - Date.now()));
      }
      await sleep(Math.min(pause, left));
      backoff = Math.min(backoff * 2, Math.max(1, maxPollMs));
    }
  }

  /** One attempt that never waits: the grant, or null if someone else holds the lock. */
  tryAcquire() {
    const outcome = call(() => this.#handle.tryAcquire());
    return outcome.tag === 'acquired' ? outcome.val : null;
  }

  /** Extend the deadline by the timeout, from now; returns the new deadline (ms, BigInt). */
  refresh() {
    return call(() => this.#handle.refresh());
  }

  /** Give the lock up: 'in-time' or 'late'. Throws LockError('compromised') if taken over. */
  release() {
    return call(() => this.#handle.release());
  }

  /** The lock's state now: `{ tag: 'absent' | 'free' | 'held' | 'expired', val }`. */
  inspect() {
    return call(() => this.#handle.inspect());
  }

  /**
   * Acquire, run `fn(grant)`, and release in `finally`, even if `fn` throws. Resolves to what
   * `fn` returned. If the lock was lost meanwhile, the release throws LockError('compromised').
   */
  async withLock(fn) {
    const grant = await this.acquire();
    try {
      return await fn(grant);
    } finally {
      this.release();
    }
  }

  /** Drop the component's handle (releasing the lock if this handle holds it). */
  close() {
    this.#handle[Symbol.dispose ?? Symbol.for('dispose')]?.();
  }
}
