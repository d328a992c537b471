"""Use the lockbydir lock component from Python, on wasmtime's component support.

The component comes from ``lockbydir component --out lock.wasm``. Each :class:`LockDir`
instantiates it once, in its own wasmtime store, with the lock directory as its only
preopened directory (mapped as ``.``)::

    from lockbydir import LockDir

    locks = LockDir("/var/lock/myapp")
    with locks.lock("db-migrate", timeout_ms=30_000, holder="migrator") as grant:
        ...  # pass grant.fence to the resource

A ``LockDir`` and its locks belong to one thread (a wasmtime store is not thread-safe).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, Variant

__all__ = [
    "LockDir",
    "Lock",
    "Grant",
    "HolderInfo",
    "LockError",
    "LockBusy",
    "DEFAULT_COMPONENT",
]

#: Where :class:`LockDir` looks for the component by default: ``lock.wasm`` next to this file.
DEFAULT_COMPONENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lock.wasm")

_INTERFACE = "lockbydir:lock/lock@0.1.0"
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
        timeout_ms=_field(record, "timeout-ms"),
    )


def _describe(code: str, payload: Any) -> str:
    """A one-line description of a WIT ``error``."""
    if code == "io":
        return (
            f"{_field(payload, 'operation')} `{_field(payload, 'path')}` failed: "
            f"{_field(payload, 'message')}"
        )
    if code == "compromised":
        by = _holder(_field(payload, "now-held-by"))
        took = f" by `{by.holder}` (fence {by.fence})" if by else ""
        return f"compromised: the lock (fence {_field(payload, 'fence')}) was taken over{took}"
    return code if payload is None else f"{code}: {payload}"


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


class LockDir:
    """One lock directory, seen through one instance of the lock component."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        component: str | os.PathLike[str] = DEFAULT_COMPONENT,
    ):
        """Instantiate ``component`` in a new wasmtime store whose only preopened directory is
        ``path``, mapped as ``.`` (nothing else: no environment, no other files)."""
        self.path = os.fspath(path)
        engine = Engine()
        linker = Linker(engine)
        linker.add_wasip2()
        self._store = Store(engine)
        wasi = WasiConfig()
        wasi.preopen_dir(self.path, ".")
        wasi.inherit_stderr()
        self._store.set_wasi(wasi)
        wasm = Component.from_file(engine, os.fspath(component))
        instance = linker.instantiate(self._store, wasm)
        iface = instance.get_export_index(self._store, _INTERFACE)
        if iface is None:
            raise LockError("invalid-component", f"{component} does not export {_INTERFACE}")

        def func(name: str) -> Callable[..., Any]:
            """Export ``name`` of the interface, called in this store."""
            index = instance.get_export_index(self._store, name, iface)
            f = instance.get_func(self._store, index) if index is not None else None
            if f is None:
                raise LockError("invalid-component", f"{component} has no {name} in {_INTERFACE}")
            return lambda *args: f(self._store, *args)

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
        options = Record()
        for key, value in {
            "timeout-ms": timeout_ms,
            "patience-ms": _U64_MAX if patience_ms is None else patience_ms,
            "min-poll-ms": min_poll_ms,
            "max-poll-ms": max_poll_ms,
            "max-clock-skew-ms": max_clock_skew_ms,
            "holder": holder if holder is not None else f"python-{os.getpid()}",
        }.items():
            setattr(options, key, value)
        handle = _unwrap(self._open(name, options))
        return Lock(self, name, handle, on_wait, patience_ms != 0)

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
    up to its patience) and releases it when the block ends, even on an exception."""

    def __init__(
        self,
        locks: LockDir,
        name: str,
        handle: Any,
        on_wait: Optional[Callable[[Optional[HolderInfo]], None]],
        patient: bool,
    ):
        """Made by :meth:`LockDir.lock`: the component's ``lock`` resource and its settings."""
        self._locks = locks
        self._handle = handle
        self._on_wait = on_wait
        self._patient = patient
        self.name = name

    def acquire(self) -> Grant:
        """Wait until the lock is ours (the component sleeps until the holder's deadline or
        its backoff). Raises LockBusy once the patience has passed."""
        outcome = _unwrap(self._locks._try_acquire(self._handle))
        if outcome.tag == "busy" and self._patient:
            if self._on_wait is not None:
                self._on_wait(_holder(outcome.payload))
            outcome = _unwrap(self._locks._acquire(self._handle))
        return self._grant(outcome)

    def try_acquire(self) -> Optional[Grant]:
        """One attempt that never waits: the grant, or None if someone else holds the lock."""
        outcome = _unwrap(self._locks._try_acquire(self._handle))
        return None if outcome.tag == "busy" else self._grant(outcome)

    def refresh(self) -> int:
        """Extend the deadline by the timeout, from now; returns the new deadline (ms)."""
        return _unwrap(self._locks._refresh(self._handle))

    def release(self) -> str:
        """Give the lock up: ``"in-time"`` or ``"late"``. Raises LockError("compromised") if
        the lock was taken over meanwhile."""
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
        if self._handle is not None:
            self._handle.drop(self._locks._store)
            self._handle = None

    def _grant(self, outcome: Variant) -> Grant:
        """The Grant of an ``acquired`` outcome; LockBusy for ``busy``."""
        if outcome.tag == "busy":
            raise LockBusy(self.name, _holder(outcome.payload))
        g = outcome.payload
        return Grant(
            fence=_field(g, "fence"),
            deadline_ms=_field(g, "deadline-ms"),
            took_over=_holder(_field(g, "took-over")),
        )

    def __enter__(self) -> Grant:
        """Acquire the lock (see :meth:`acquire`); the grant is the ``as`` target."""
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        """Release the lock, whether or not the block raised (a ``compromised`` release
        raises LockError, chained to the block's exception if there was one)."""
        self.release()
