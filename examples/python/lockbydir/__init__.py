"""Use the lockbydir lock component from Python, on wasmtime's component support.

The component comes from ``lockbydir component --out lock.wasm``. Each :class:`LockDir`
instantiates it once, in its own wasmtime store, with the lock directory as its only
preopened directory (mapped as ``.``)::

    from lockbydir import LockDir

    locks = LockDir("/var/lock/myapp")
    with locks.lock("db-migrate", timeout_ms=30_000, holder="migrator") as grant:
        ...  # pass grant.fence to the resource

While the block runs, a background thread refreshes the lock every third of its timeout; if
the lock is lost anyway, leaving the block raises ``LockError("compromised")``. The full API,
and what happens on Ctrl-C, SIGTERM and exit, is in examples/README.md.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import os
import platform
import signal
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

from wasmtime import Engine, Store, WasiConfig, WasmtimeError
from wasmtime.component import Component, Linker, Record, Variant

__all__ = [
    "LockDir",
    "Lock",
    "Grant",
    "HolderInfo",
    "LockError",
    "LockBusy",
    "LockDirError",
    "DEFAULT_COMPONENT",
    "WAIT_SLICE_MS",
    "WAIT_SLICE_MAX_MS",
]

#: Where :class:`LockDir` looks for the component by default: ``$LOCKBYDIR_COMPONENT``, else
#: ``lock.wasm`` next to this file.
DEFAULT_COMPONENT = os.environ.get("LOCKBYDIR_COMPONENT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "lock.wasm"
)

#: How long each of the calls into the component that make up a wait lasts (ms). A call into
#: wasm cannot be interrupted, so Ctrl-C (and other signals) are handled between two of them,
#: and other threads' calls into the same store get their turn. A call that runs out keeps the
#: handle's ticket, so the next call goes on waiting in the same place in line.
WAIT_SLICE_MS = 250
#: The longest one call into the component waits (ms): the same as WAIT_SLICE_MS (slices do not
#: grow: one handle keeps its place in line across them).
WAIT_SLICE_MAX_MS = 250

_INTERFACE = "lockbydir:lock/lock@0.2.0"
_U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class HolderInfo:
    """What a lock records about its holder (WIT ``holder-info``)."""

    holder: str
    fence: int
    since_ms: int
    deadline_ms: int
    timeout_ms: int


@dataclass(frozen=True)
class Grant:
    """A successful acquisition (WIT ``grant``)."""

    fence: int
    deadline_ms: int
    took_over: Optional[HolderInfo]


class LockError(Exception):
    """A call failed with a WIT ``error``: ``code`` is its case, ``payload`` its value."""

    def __init__(self, code: str, payload: Any = None):
        """The error's case and payload, as the component returned them."""
        self.code = code
        self.payload = payload
        super().__init__(_describe(code, payload))


class LockBusy(TimeoutError):
    """``acquire`` ran out of patience; ``holder`` held the lock then, if one was seen."""

    def __init__(self, name: str, holder: Optional[HolderInfo]):
        """The lock's name, and its holder when the wait ended (if one was seen)."""
        self.holder = holder
        by = f" (held by `{holder.holder}`, fence {holder.fence})" if holder else ""
        super().__init__(f"lock `{name}` is busy{by}")


class LockDirError(OSError):
    """The lock directory or the component file cannot be used; the message says what to do."""


def _field(record: Record, name: str) -> Any:
    """A record's field: wasmtime keeps the WIT (kebab-case) names."""
    return getattr(record, name)


def _holder(record: Optional[Record]) -> Optional[HolderInfo]:
    """A WIT ``option<holder-info>`` as a HolderInfo or None."""
    if record is None:
        return None
    return HolderInfo(
        holder=_field(record, "holder"),
        fence=_field(record, "fence"),
        since_ms=_field(record, "since-ms"),
        deadline_ms=_field(record, "deadline-ms"),
        timeout_ms=_field(record, "lease-ms"),
    )


def _describe(code: str, payload: Any) -> str:
    """A one-line description of a WIT ``error``; cases this wrapper does not know are named."""
    if code == "io":
        return (
            f"{_field(payload, 'operation')} `{_field(payload, 'path')}` failed: "
            f"{_field(payload, 'message')}"
        )
    if code == "compromised":
        by = _holder(_field(payload, "now-held-by"))
        took = f" by `{by.holder}` (fence {by.fence})" if by else ""
        return f"compromised: the lock (fence {_field(payload, 'fence')}) was taken over{took}"
    if payload is None:
        return code
    if isinstance(payload, Record):
        return f"{code}: {vars(payload)}"
    return f"{code}: {payload}"


def _unwrap(value: Any) -> Any:
    """The ``ok`` value of a WIT ``result<T, error>``, or raise its error as LockError.

    wasmtime returns a result as a plain value, never as an exception: when ``T`` and
    ``error`` cannot be told apart by Python type (both variants), as ``Variant("ok" | "err",
    payload)``; otherwise as the bare ``T`` or the bare error ``Variant``. ``T`` is never a
    variant in the second case, so any other ``Variant`` is the error.
    """
    if isinstance(value, Variant):
        if value.tag == "ok":
            return value.payload
        error = value.payload if value.tag == "err" else value
        raise LockError(error.tag, error.payload)
    return value


def _listed_state(value: Any) -> tuple[str, Any]:
    """A listed lock's ``result<lock-state, error>``: its state, or ``("broken", LockError)``."""
    try:
        return _state(_unwrap(value))
    except LockError as error:
        return "broken", error


def _state(value: Variant) -> tuple[str, Any]:
    """A WIT ``lock-state`` as ``(tag, payload)``: payload is a fence or a HolderInfo."""
    if value.tag in ("held", "expired"):
        return value.tag, _holder(value.payload)
    return value.tag, value.payload


# --- The compiled component -----------------------------------------------------------------

_ENGINE: Optional[Engine] = None
_COMPILED: dict[str, Component] = {}
_COMPILED_GUARD = threading.Lock()


def _cache_dir() -> str:
    """Where compiled components are kept, as the CLI does: ``$LOCKBYDIR_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/lockbydir``, else ``~/.cache/lockbydir``."""
    if os.environ.get("LOCKBYDIR_CACHE_DIR"):
        return os.environ["LOCKBYDIR_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lockbydir")


def _component(path: str) -> tuple[Engine, Component]:
    """The component at ``path``, compiled: once per process and file content, and across
    processes through a cache file keyed by the file's SHA-256, the wasmtime version and the
    machine (a cache file that does not load is replaced)."""
    global _ENGINE
    try:
        with open(path, "rb") as f:
            wasm = f.read()
    except OSError as e:
        raise LockDirError(
            f"lock component {path} cannot be read ({e.strerror}): write it with "
            f"`lockbydir component --out {path}`, or set LOCKBYDIR_COMPONENT to where it is",
        ) from None
    digest = hashlib.sha256(wasm).hexdigest()
    with _COMPILED_GUARD:
        if _ENGINE is None:
            _ENGINE = Engine()
        if digest in _COMPILED:
            return _ENGINE, _COMPILED[digest]
        version = importlib.metadata.version("wasmtime")
        key = hashlib.sha256(f"{digest} {version} {platform.machine()}".encode()).hexdigest()
        cached = os.path.join(_cache_dir(), "python", f"{key}.cwasm")
        component = None
        if os.path.exists(cached):
            try:
                component = Component.deserialize_file(_ENGINE, cached)
            except WasmtimeError:
                component = None
        if component is None:
            try:
                component = Component(_ENGINE, wasm)
            except WasmtimeError as e:
                raise LockDirError(f"{path} is not a usable lock component: {e}") from None
            try:  # best effort: an unwritable cache only costs the next process a compile
                os.makedirs(os.path.dirname(cached), exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cached), suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(component.serialize())
                os.replace(tmp, cached)
            except OSError:
                pass
        _COMPILED[digest] = component
        return _ENGINE, component


# --- Exits and signals ----------------------------------------------------------------------
#
# Every lock this process holds is released at interpreter exit (atexit: a normal end,
# sys.exit, an uncaught exception or KeyboardInterrupt). While a lock is held or waited for
# in the main thread, SIGTERM and SIGHUP (when their handler is the default one) raise
# SystemExit(128 + signal) there, so ``with`` blocks and ``finally`` clauses run and release.
# Ctrl-C is Python's own KeyboardInterrupt. SIGKILL cannot be caught: the lock then frees
# itself at its deadline.

_HELD: "weakref.WeakSet[Lock]" = weakref.WeakSet()
_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)
_signal_users = 0
_signal_guard = threading.Lock()


def _release_all() -> None:
    """Release every lock still held (best effort: the process is going away)."""
    for lock in list(_HELD):
        try:
            lock.release()
        except Exception:  # compromised or not-held: nothing is left to give back
            pass


atexit.register(_release_all)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP while a lock is held or waited for: unwind (releasing) and exit."""
    raise SystemExit(128 + signum)


def _signals(delta: int) -> bool:
    """Count users of the signal handlers; install them (where the handler is the default)
    when the first starts, restore the default when the last stops. Only the main thread
    handles signals: elsewhere this does nothing and returns False."""
    global _signal_users
    if threading.current_thread() is not threading.main_thread():
        return False
    with _signal_guard:
        before = _signal_users
        _signal_users += delta
        for s in _SIGNALS:
            if before == 0 and _signal_users > 0 and signal.getsignal(s) == signal.SIG_DFL:
                signal.signal(s, _exit_on_signal)
            elif before > 0 and _signal_users == 0 and signal.getsignal(s) is _exit_on_signal:
                signal.signal(s, signal.SIG_DFL)
    return True


class LockDir:
    """One lock directory, seen through one instance of the lock component."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        component: str | os.PathLike[str] = DEFAULT_COMPONENT,
        *,
        create: bool = False,
    ):
        """Instantiate ``component`` in a new wasmtime store whose only preopened directory is
        ``path``, mapped as ``.`` (nothing else: no environment, no other files). With
        ``create``, make the directory (and its parents) if it is missing. The compiled
        component is shared by every LockDir of the process and cached on disk."""
        self.path = os.fspath(path)
        component = os.fspath(component)
        if create:
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as e:
                raise LockDirError(
                    f"lock directory {self.path} cannot be created: {e.strerror}"
                ) from None
        if not os.path.isdir(self.path):
            why = (
                "it is not a directory"
                if os.path.exists(self.path)
                else f"it does not exist (create it first, for example `mkdir -p {self.path}`, "
                "or pass create=True)"
            )
            raise LockDirError(f"lock directory {self.path} cannot be used: {why}")
        engine, wasm = _component(component)
        linker = Linker(engine)
        linker.add_wasip2()
        self._store = Store(engine)
        # Every call into the store goes through this lock: a wasmtime store is not
        # thread-safe, and the refresher threads call into it too.
        self._mutex = threading.RLock()
        wasi = WasiConfig()
        try:
            wasi.preopen_dir(self.path, ".")
        except WasmtimeError:
            raise LockDirError(
                f"lock directory {self.path} cannot be used: wasmtime could not open it "
                "(check that it exists, is a directory, and that you may read and write it)"
            ) from None
        wasi.inherit_stderr()
        self._store.set_wasi(wasi)
        instance = linker.instantiate(self._store, wasm)
        iface = instance.get_export_index(self._store, _INTERFACE)
        if iface is None:
            raise LockDirError(f"{component} is not a lock component: no {_INTERFACE} export")

        def func(name: str) -> Callable[..., Any]:
            """Export ``name`` of the interface, called in this store under its lock."""
            index = instance.get_export_index(self._store, name, iface)
            f = instance.get_func(self._store, index) if index is not None else None
            if f is None:
                raise LockDirError(f"{component} has no {name} in {_INTERFACE}")

            def called(*args: Any) -> Any:
                with self._mutex:
                    return f(self._store, *args)

            return called

        self._open = func("[static]lock.open")
        self._acquire = func("[method]lock.acquire")
        self._try_acquire = func("[method]lock.try-acquire")
        self._refresh = func("[method]lock.refresh")
        self._release = func("[method]lock.release")
        self._inspect = func("[method]lock.inspect")
        self._fence = func("[method]lock.fence")
        self._list_locks = func("list-locks")
        self._now_ms = func("now-ms")

    def lock(
        self,
        name: str,
        *,
        timeout_ms: int = 30_000,
        patience_ms: Optional[int] = None,
        min_poll_ms: int = 1,
        max_poll_ms: int = 50,
        max_clock_skew_ms: int = 0,
        holder: Optional[str] = None,
        on_wait: Optional[Callable[[Optional[HolderInfo]], None]] = None,
    ) -> "Lock":
        """A handle on lock ``name``. ``patience_ms=None`` waits forever; ``on_wait(holder)``
        is called when an ``acquire`` finds the lock busy and starts waiting."""
        tuning = Record()
        setattr(tuning, "min-poll-ms", min_poll_ms)
        setattr(tuning, "max-poll-ms", max_poll_ms)
        setattr(tuning, "max-clock-skew-ms", max_clock_skew_ms)
        settings = {
            "lease-ms": timeout_ms,
            "holder": holder if holder is not None else f"python-{os.getpid()}",
            "fairness": None,
            "tuning": tuning,
        }

        def open_handle(patience: int) -> Any:
            """A component handle on the lock whose ``acquire`` waits at most ``patience``."""
            options = Record()
            for key, value in {**settings, "wait-ms": patience}.items():
                setattr(options, key, value)
            return _unwrap(self._open(name, options))

        return Lock(self, name, open_handle, timeout_ms, patience_ms, on_wait)

    def list_locks(self) -> list[tuple[str, tuple[str, Any]]]:
        """Every lock in the directory as ``(name, (state, payload))``, sorted by name. A
        lock whose lockdir cannot be read is ``(name, ("broken", LockError))``."""
        return [
            (_field(s, "name"), _listed_state(_field(s, "state")))
            for s in _unwrap(self._list_locks())
        ]

    def now_ms(self) -> int:
        """The component's wall clock, in milliseconds since the epoch."""
        return self._now_ms()


class Lock:
    """One named lock, as used by one holder. ``with lock as grant:`` acquires it (waiting
    up to its patience), refreshes it while the block runs, and releases it when the block
    ends, even on an exception."""

    def __init__(
        self,
        locks: LockDir,
        name: str,
        open_handle: Callable[[int], Any],
        timeout_ms: int,
        patience_ms: Optional[int],
        on_wait: Optional[Callable[[Optional[HolderInfo]], None]],
    ):
        """Made by :meth:`LockDir.lock`: how to open component handles, and the settings."""
        self._locks = locks
        self._open_handle = open_handle
        self._timeout_ms = timeout_ms
        self._patience_ms = patience_ms
        self._on_wait = on_wait
        self._slice = WAIT_SLICE_MS if patience_ms is None else min(WAIT_SLICE_MS, patience_ms)
        self._handle = open_handle(self._slice)
        self._refresher: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lost: Optional[LockError] = None
        self._signals = False
        self.name = name

    @property
    def lost(self) -> Optional[LockError]:
        """The ``LockError("compromised")`` an automatic refresh met while held, or None."""
        return self._lost

    def acquire(self) -> Grant:
        """Wait until the lock is ours, in the lock's fair queue like every other waiter, and
        start refreshing it. Raises LockBusy once the patience has passed.

        The wait is a series of component ``acquire`` calls of WAIT_SLICE_MS growing to
        WAIT_SLICE_MAX_MS, so that Ctrl-C and signals are handled between two of them (a call
        into wasm cannot be interrupted). A slice that runs out gives its queue ticket back;
        the next one queues again, behind those who came meanwhile."""
        if self in _HELD:
            raise LockError("already-held")
        counted = _signals(+1)
        try:
            outcome = self._call(self._locks._try_acquire)
            if outcome.tag == "busy" and self._patience_ms != 0:
                if self._on_wait is not None:
                    self._on_wait(_holder(outcome.payload))
                start = time.monotonic()
                slice_ms = WAIT_SLICE_MS
                while outcome.tag == "busy":
                    left = None
                    if self._patience_ms is not None:
                        left = self._patience_ms - (time.monotonic() - start) * 1000
                        if left <= 0:
                            break
                    self._use_patience(slice_ms if left is None else min(slice_ms, max(1, int(left))))
                    outcome = self._call(self._locks._acquire)
                    slice_ms = min(2 * slice_ms, WAIT_SLICE_MAX_MS)
                if outcome.tag == "busy":
                    self._leave_queue()
            return self._grant(outcome)
        except BaseException:
            # KeyboardInterrupt (or SystemExit from a signal) can arrive between bytecodes
            # after a call took the lock and before it was recorded: give it back.
            if self not in _HELD and self._locks._fence(self._handle) is not None:
                try:
                    _unwrap(self._locks._release(self._handle))
                except LockError:
                    pass
            # A slice that ran out kept the handle's place in line: give it back.
            if self not in _HELD:
                self._leave_queue()
            raise
        finally:
            if counted:
                _signals(-1)

    def try_acquire(self) -> Optional[Grant]:
        """One attempt that never waits: the grant, or None if someone else holds the lock."""
        if self in _HELD:
            raise LockError("already-held")
        outcome = self._call(self._locks._try_acquire)
        return None if outcome.tag == "busy" else self._grant(outcome)

    def refresh(self) -> int:
        """Extend the deadline by the timeout, from now; returns the new deadline (ms)."""
        if self._lost is not None:
            raise self._lost
        return _unwrap(self._locks._refresh(self._handle))

    def release(self) -> str:
        """Give the lock up: ``"in-time"`` or ``"late"``. Raises LockError("compromised") if
        the lock was taken over meanwhile (found now or by an earlier automatic refresh)."""
        self._stop_refreshing()
        lost, self._lost = self._lost, None
        if lost is not None:
            raise lost
        return _unwrap(self._locks._release(self._handle))

    def inspect(self) -> tuple[str, Any]:
        """The lock's state now: ``("absent" | "free" | "held" | "expired", payload)``."""
        return _state(_unwrap(self._locks._inspect(self._handle)))

    @property
    def fence(self) -> Optional[int]:
        """The fencing token this handle holds, if it holds the lock."""
        return self._locks._fence(self._handle)

    def close(self) -> None:
        """Drop the component's handle (which releases the lock if this handle holds it)."""
        self._stop_refreshing()
        if self._handle is not None:
            with self._locks._mutex:
                self._handle.drop(self._locks._store)
            self._handle = None

    def _call(self, method: Callable[[Any], Any]) -> Variant:
        """An acquire-like call on the current handle."""
        return _unwrap(method(self._handle))

    def _leave_queue(self) -> None:
        """Give back the place in line that a wait slice which ran out kept (the component
        handle's ticket): drop the handle for a fresh one."""
        handle = self._open_handle(self._slice)
        with self._locks._mutex:
            self._handle.drop(self._locks._store)
        self._handle = handle

    def _use_patience(self, ms: int) -> None:
        """Use a handle whose ``acquire`` waits at most ``ms`` (a new one if it differs)."""
        if ms != self._slice:
            handle = self._open_handle(ms)
            with self._locks._mutex:
                self._handle.drop(self._locks._store)
            self._handle, self._slice = handle, ms

    def _grant(self, outcome: Variant) -> Grant:
        """The Grant of an ``acquired`` outcome (and start refreshing); LockBusy for ``busy``."""
        if outcome.tag == "busy":
            raise LockBusy(self.name, _holder(outcome.payload))
        g = outcome.payload
        self._start_refreshing()
        return Grant(
            fence=_field(g, "fence"),
            deadline_ms=_field(g, "deadline-ms"),
            took_over=_holder(_field(g, "took-over")),
        )

    def _start_refreshing(self) -> None:
        """Record the lock as held and refresh it every third of its timeout, in a daemon
        thread, until released. A refresh that finds it lost stops and records why."""
        self._lost = None
        _HELD.add(self)
        self._signals = _signals(+1)
        stop = self._stop = threading.Event()
        every = max(0.001, self._timeout_ms / 3000)

        def refresh_loop() -> None:
            while not stop.wait(every):
                try:
                    _unwrap(self._locks._refresh(self._handle))
                except LockError as e:
                    if e.code in ("compromised", "not-held"):
                        if e.code == "compromised":
                            self._lost = e
                        return
                    # Other errors (io): try again at the next tick; release says how it ended.

        self._refresher = threading.Thread(
            target=refresh_loop, name=f"lockbydir-refresh-{self.name}", daemon=True
        )
        self._refresher.start()

    def _stop_refreshing(self) -> None:
        """Stop the refresher (waiting for a refresh in flight) and forget the lock is held."""
        self._stop.set()
        thread, self._refresher = self._refresher, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self in _HELD:
            _HELD.discard(self)
            if self._signals:
                self._signals = False
                _signals(-1)

    def __enter__(self) -> Grant:
        """Acquire the lock (see :meth:`acquire`); the grant is the ``as`` target."""
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        """Release the lock, whether or not the block raised (a ``compromised`` release
        raises LockError, chained to the block's exception if there was one)."""
        self.release()
