"""The ``EventlogState`` snapshot (spec section 6): typed decode and encode.

The monitor folds every event into this state and sends it first on each
connection, so a late receiver knows the program's threads, capsets,
capabilities and tasks without the history.  Enumerations use Haskell
declaration order here, not eventlog numbering (spec 6.2, 6.3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import cbor2

from . import _cbor
from ._messages import MessageError, _cons, _exact, _show, _uint

_T = TypeVar("_T")

EXECUTION = ["created", "queued", "running", "stopped", "migrated"]
STOP_STATUS = [
    "NoStatus", "HeapOverflow", "StackOverflow", "ThreadYielding", "ThreadBlocked",
    "ThreadFinished", "ForeignCall", "BlockedOnMVar", "BlockedOnMVarRead", "BlockedOnBlackHole",
    "BlockedOnRead", "BlockedOnWrite", "BlockedOnDelay", "BlockedOnSTM", "BlockedOnDoProc",
    "BlockedOnCCall", "BlockedOnCCall_NoUnblockExc", "BlockedOnMsgThrowTo", "ThreadMigrating",
    "BlockedOnMsgGlobalise", "BlockedOnBlackHoleOwnedBy"]
CAPSET_TYPE = ["custom", "os_process", "clock_domain", "unknown"]


class StateError(MessageError):
    """A ``ProfileState`` payload that is not a valid ``EventlogState``."""


@dataclass
class ThreadState:
    thread: int
    label: str | None
    cap: int | None              # None: not yet on a capability (-1 on the wire)
    execution: str               # one of EXECUTION
    stop_status: str | None      # set when execution == "stopped"
    blocked_owner: int | None    # for BlockedOnBlackHoleOwnedBy
    spark_count: int | None
    created: int
    last_change: int


@dataclass
class CapsetState:
    capset: int
    type: str
    caps: list[int]
    last_change: int
    created: int
    rts_ident: str
    args: list[str]
    env: list[str]
    pid: int | None
    ppid: int | None
    wall_sec: int
    wall_nsec: int
    heap_allocated: int
    heap_size: int
    heap_live: int
    generations: int
    max_heap_size: int
    alloc_area_size: int
    mblock_size: int
    block_size: int
    last_gc: int | None
    gc_copied: int
    gc_slop: int
    gc_frag: int
    gc_par_threads: int
    gc_par_max_copied: int
    gc_par_tot_copied: int


@dataclass
class CapState:
    cap: int
    disabled: bool
    last_change: int
    created: int


@dataclass
class TaskState:
    task: int
    cap: int
    kernel_thread: int
    created: int
    last_change: int


@dataclass
class EventlogState:
    threads: dict[int, ThreadState] = field(default_factory=dict)
    capsets: dict[int, CapsetState] = field(default_factory=dict)
    caps: dict[int, CapState] = field(default_factory=dict)
    tasks: dict[int, TaskState] = field(default_factory=dict)
    gc_since: int | None = None      # time the collection in progress started
    last_update: int = 0


# -- decoding ------------------------------------------------------------------------------

def decode_state(payload: bytes) -> EventlogState:
    try:
        item = _cbor.loads(payload)
    except _cbor.CborError as exc:
        raise StateError(f"state snapshot is not valid CBOR: {exc}") from None
    try:
        _, (threads, capsets, caps, tasks, gc, last) = _cons(item, "EventlogState", {0: 6})
        return EventlogState(
            threads=_map(threads, "threads", _thread),
            capsets=_map(capsets, "capsets", _capset),
            caps=_map(caps, "caps", _cap),
            tasks=_map(tasks, "tasks", _task),
            gc_since=_maybe(gc, "GC in progress", _word),
            last_update=_word(last, "last update"))
    except MessageError as exc:
        raise StateError(f"state snapshot: {exc}") from None


# the type checks of the message codec; decode_state turns their MessageError
# into a StateError
_word = _uint


def _int(v: object, what: str) -> int:
    return _exact(v, int, what, "an integer")


def _str(v: object, what: str) -> str:
    return _exact(v, str, what, "a text string")


def _bool(v: object, what: str) -> bool:
    return _exact(v, bool, what, "a boolean")


def _list(v: Any, what: str, item: Callable[[Any, str], _T]) -> list[_T]:
    if type(v) is not list:
        raise StateError(f"{what}: expected an array, got {_show(v)}")
    return [item(x, what) for x in v]


def _maybe(v: Any, what: str, item: Callable[[Any, str], _T]) -> _T | None:
    if type(v) is not list or len(v) > 1:
        raise StateError(f"{what}: expected Maybe ([] or [x]), got {_show(v)}")
    return item(v[0], what) if v else None


def _map(v: Any, what: str, value: Callable[[Any], _T]) -> dict[int, _T]:
    if type(v) is not dict:
        raise StateError(f"{what}: expected a map, got {_show(v)}")
    return {_int(k, f"{what} key"): value(x) for k, x in v.items()}


def _thread(v: Any) -> ThreadState:
    _, (tid, label, cap, execution, sparks, created, last) = _cons(v, "ThreadState", {0: 7})
    etag, efields = _cons(execution, "ThreadExecutionState", {0: 0, 1: 0, 2: 0, 3: 1, 4: 0})
    status = owner = None
    if etag == 3:
        arities = {n: 0 for n in range(20)}
        arities[20] = 1
        stag, sfields = _cons(efields[0], "ThreadStopStatus", arities)
        status = STOP_STATUS[stag]
        owner = _word(sfields[0], "black hole owner") if sfields else None
    cap = _int(cap, "thread capability")
    return ThreadState(_word(tid, "thread id"), _maybe(label, "thread label", _str),
                       None if cap < 0 else cap, EXECUTION[etag], status, owner,
                       _maybe(sparks, "spark count", _int), _word(created, "thread created"),
                       _word(last, "thread last change"))


def _capset(v: Any) -> CapsetState:
    _, f = _cons(v, "CapsetState", {0: 27})
    ttag, _ = _cons(f[1], "CapsetType", {0: 0, 1: 0, 2: 0, 3: 0})
    words = [_word(x, "capset field") for x in (f[3], f[4])]
    values: list[Any] = [
        _word(f[0], "capset id"), CAPSET_TYPE[ttag], _list(f[2], "capset caps", _int),
        words[0], words[1], _str(f[5], "RTS identifier"), _list(f[6], "program args", _str),
        _list(f[7], "environment", _str), _maybe(f[8], "pid", _word), _maybe(f[9], "ppid", _word),
        *(_word(x, "capset field") for x in f[10:15]), _int(f[15], "generations"),
        *(_word(x, "capset field") for x in f[16:20]), _maybe(f[20], "last GC", _word),
        *(_word(x, "capset field") for x in f[21:24]), _int(f[24], "GC parallel threads"),
        *(_word(x, "capset field") for x in f[25:27])]
    return CapsetState(*values)


def _cap(v: Any) -> CapState:
    _, (cap, disabled, last, created) = _cons(v, "CapState", {0: 4})
    return CapState(_int(cap, "capability"), _bool(disabled, "disabled"),
                    _word(last, "cap last change"), _word(created, "cap created"))


def _task(v: Any) -> TaskState:
    _, (task, cap, kernel, created, last) = _cons(v, "TaskState", {0: 5})
    _, (ktid,) = _cons(kernel, "KernelThreadId", {0: 1})
    return TaskState(_word(task, "task id"), _int(cap, "task capability"),
                     _word(ktid, "kernel thread id"), _word(created, "task created"),
                     _word(last, "task last change"))


# -- encoding (for tests and tools) --------------------------------------------------------

class _Indefinite:
    """A Haskell list: written as an indefinite-length array when non-empty.
    (Not a list subclass: cbor2 would encode that as a definite array.)"""

    def __init__(self, items: list[Any]) -> None:
        self.items = items


def _default(encoder: Any, value: object) -> None:
    if isinstance(value, _Indefinite):
        encoder.write(b"\x9f")
        for x in value.items:
            encoder.encode(x)
        encoder.write(b"\xff")
        return
    raise TypeError(f"cannot encode {type(value).__name__}")


def _hs_list(items: list[Any]) -> list[Any] | _Indefinite:
    return _Indefinite(items) if items else []


def _opt(value: object) -> list[Any]:
    return [] if value is None else [value]


def encode_state(state: EventlogState) -> bytes:
    """CBOR of ``state`` in the monitor's shape (map order is insertion order)."""
    def thread(t: ThreadState) -> list[Any]:
        ex: list[Any] = [EXECUTION.index(t.execution)]
        if t.execution == "stopped":
            status = [STOP_STATUS.index(t.stop_status or "NoStatus")]
            if t.stop_status == "BlockedOnBlackHoleOwnedBy":
                status.append(t.blocked_owner or 0)
            ex.append(status)
        return [0, t.thread, _opt(t.label), -1 if t.cap is None else t.cap, ex,
                _opt(t.spark_count), t.created, t.last_change]

    def capset(c: CapsetState) -> list[Any]:
        values = [getattr(c, f.name) for f in fields(CapsetState)]
        values[1] = [CAPSET_TYPE.index(c.type)]
        values[6], values[7] = _hs_list(c.args), _hs_list(c.env)
        values[8], values[9], values[20] = _opt(c.pid), _opt(c.ppid), _opt(c.last_gc)
        return [0, *values]

    item = [0,
            {k: thread(t) for k, t in state.threads.items()},
            {k: capset(c) for k, c in state.capsets.items()},
            {k: [0, c.cap, c.disabled, c.last_change, c.created] for k, c in state.caps.items()},
            {k: [0, t.task, t.cap, [0, t.kernel_thread], t.created, t.last_change]
             for k, t in state.tasks.items()},
            _opt(state.gc_since), state.last_update]
    return cbor2.dumps(item, default=_default)
