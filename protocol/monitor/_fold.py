"""The sender's state fold (spec section 6): event records in, ``EventlogState``.

The monitor folds every event into the state it sends first on each
connection; ``StateFold.apply(type_id, time, record)`` is that fold, on the
raw event record (spec 5.2) so the sender never decodes the events the
state does not need.  ``FOLDED`` lists the type ids that change the state;
the others are no-ops the caller may skip.  A record too short for its
fields is ignored (the state is advisory; the events themselves go on).

The agent's own identity travels in the snapshot as one extra capset
(liveprof's extension, docs/monitor-protocol.md section 6.7):
``agent_capset`` makes it, ``agent_identity`` reads it back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ._state import CapsetState, CapState, EventlogState, TaskState, ThreadState

_U32 = struct.Struct(">I")
_U32U16 = struct.Struct(">IH")
_U32U64 = struct.Struct(">IQ")
_WALL = struct.Struct(">IQI")
_HEAP_INFO = struct.Struct(">IHQQQQ")
_GC_STATS = struct.Struct(">IHQQQIQQ")
_TASK = struct.Struct(">QHQ")
_TASK_MIGRATE = struct.Struct(">QHH")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")

# eventlog stop status (spec 5.2's numbering) -> the snapshot's name (spec 6.2)
STOP_NAMES = {
    0: "NoStatus", 1: "HeapOverflow", 2: "StackOverflow", 3: "ThreadYielding",
    4: "ThreadBlocked", 5: "ThreadFinished", 6: "ForeignCall", 7: "BlockedOnMVar",
    8: "BlockedOnBlackHole", 9: "BlockedOnRead", 10: "BlockedOnWrite", 11: "BlockedOnDelay",
    12: "BlockedOnSTM", 13: "BlockedOnDoProc", 14: "BlockedOnCCall",
    15: "BlockedOnCCall_NoUnblockExc", 16: "BlockedOnMsgThrowTo", 17: "ThreadMigrating",
    18: "BlockedOnMsgGlobalise", 20: "BlockedOnMVarRead"}
CAPSET_TYPES = {1: "custom", 2: "os_process", 3: "clock_domain"}
THREAD_FINISHED = 5

# How each folded type changes the state, for the C encoder's thinning
# (protocol/monitor/_speedups.c, ``thin``): type id -> (kind, the fewest payload
# bytes its handler reads).  Kinds: 1 kept always (creates, removes: a barrier),
# 2 a thread's execution fields, 3 stop (as 2, or a removal when finished),
# 4 migrate (as 2, and the thread's capability), 5 gc start, 6 gc end, 7 gc
# busy, 8 fields of one capset proper to the type.  Every handler is here
# (tests/agent/test_native_encoder.py checks it, and each minimum).
KEEP, THREAD, STOP, MIGRATE, GC_START, GC_END, GC_BUSY, CAPSET = range(1, 9)
PLAN: dict[int, tuple[int, int]] = {
    0: (KEEP, 4), 15: (KEEP, 4), 1: (THREAD, 4), 3: (THREAD, 4), 2: (STOP, 6),
    4: (MIGRATE, 6), 44: (KEEP, 4),
    9: (GC_START, 0), 10: (GC_END, 0), 22: (GC_END, 0), 20: (GC_BUSY, 0), 21: (GC_BUSY, 0),
    54: (GC_BUSY, 0),
    25: (KEEP, 6), 26: (KEEP, 4), 27: (KEEP, 6), 28: (KEEP, 6), 29: (KEEP, 4), 30: (KEEP, 4),
    31: (KEEP, 4), 32: (KEEP, 8), 33: (KEEP, 8), 43: (KEEP, 16),
    49: (CAPSET, 12), 50: (CAPSET, 12), 51: (CAPSET, 12), 52: (KEEP, 38), 53: (CAPSET, 50),
    45: (KEEP, 2), 46: (KEEP, 2), 47: (KEEP, 2), 48: (KEEP, 2),
    55: (KEEP, 18), 56: (KEEP, 12), 57: (KEEP, 8)}


def plan_table() -> bytes:
    """``PLAN`` as the C encoder reads it: (kind, minimum) bytes for each of the
    65536 type ids, 0 for a type that is not folded."""
    table = bytearray(65536 * 2)
    for type_id, (kind, least) in PLAN.items():
        table[2 * type_id:2 * type_id + 2] = bytes((kind, least))
    return bytes(table)


AGENT_CAPSET = 0xFFFFFFFF            # the capset id of the agent's identity (6.7)
AGENT_IDENT = "liveprof-agent"       # its RTS identifier


def _new_capset(capset: int, kind: str, t: int) -> CapsetState:
    return CapsetState(capset, kind, [], t, t, "", [], [], None, None, 0, 0, 0, 0, 0, 0, 0, 0,
                       0, 0, None, 0, 0, 0, 0, 0, 0)


def _strings(raw: bytes) -> list[str]:
    """NUL-terminated strings (program args, env)."""
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace") for p in parts]


class StateFold:
    """The state of one eventlog run, kept up to date record by record."""

    def __init__(self) -> None:
        self.state = EventlogState()
        self._handlers = {
            0: self._create_thread, 15: self._create_spark_thread, 1: self._run,
            2: self._stop, 3: self._runnable, 4: self._migrate, 44: self._label,
            9: self._gc_start, 10: self._gc_end, 22: self._gc_end, 20: self._gc_busy,
            21: self._gc_busy, 54: self._gc_busy,
            25: self._capset_create, 26: self._capset_delete, 27: self._assign, 28: self._remove,
            29: self._rts_ident, 30: self._args, 31: self._env, 32: self._pid, 33: self._ppid,
            43: self._wall, 49: self._heap(13), 50: self._heap(14), 51: self._heap(15),
            52: self._heap_info, 53: self._gc_stats,
            45: self._cap_create, 46: self._cap_delete, 47: self._cap_flag(True),
            48: self._cap_flag(False),
            55: self._task_create, 56: self._task_migrate, 57: self._task_delete}

    @property
    def folded(self) -> frozenset[int]:
        return frozenset(self._handlers)

    def apply(self, type_id: int, t: int, p: bytes) -> None:
        """Fold one event: ``p`` is its payload (after the 10-byte header and,
        for variable-size types, the 2-byte length)."""
        handler = self._handlers.get(type_id)
        if handler is None:
            return
        try:
            handler(t, p)
        except struct.error:
            return          # a record too short for its fields: the state skips it
        self.state.last_update = t

    # -- threads -------------------------------------------------------------------------

    def _create_thread(self, t: int, p: bytes) -> None:
        (tid,) = _U32.unpack_from(p)
        self.state.threads[tid] = ThreadState(tid, None, None, "created", None, None, None, t, t)

    def _create_spark_thread(self, t: int, p: bytes) -> None:
        (tid,) = _U32.unpack_from(p)
        self.state.threads[tid] = ThreadState(tid, None, None, "created", None, None, 0, t, t)

    def _set(self, p: bytes, t: int, execution: str) -> ThreadState | None:
        (tid,) = _U32.unpack_from(p)
        th = self.state.threads.get(tid)
        if th is not None:
            th.execution, th.stop_status, th.blocked_owner, th.last_change = execution, None, None, t
        return th

    def _run(self, t: int, p: bytes) -> None:
        self._set(p, t, "running")

    def _runnable(self, t: int, p: bytes) -> None:
        self._set(p, t, "queued")

    def _migrate(self, t: int, p: bytes) -> None:
        th = self._set(p, t, "migrated")
        if th is not None:
            th.cap = _U32U16.unpack_from(p)[1]

    def _stop(self, t: int, p: bytes) -> None:
        tid, status = _U32U16.unpack_from(p)
        owner = _U32.unpack_from(p, 6)[0] if len(p) >= 10 else 0   # (no owner before GHC 7.4)
        if status == THREAD_FINISHED:
            self.state.threads.pop(tid, None)
            return
        th = self._set(p, t, "stopped")
        if th is not None:
            if status == 8 and owner:
                th.stop_status, th.blocked_owner = "BlockedOnBlackHoleOwnedBy", owner
            else:
                th.stop_status = STOP_NAMES.get(status, "NoStatus")

    def _label(self, t: int, p: bytes) -> None:
        (tid,) = _U32.unpack_from(p)
        th = self.state.threads.get(tid)
        if th is not None:
            th.label = p[4:].decode("utf-8", "replace")

    # -- GC --------------------------------------------------------------------------------

    def _gc_start(self, t: int, p: bytes) -> None:
        self.state.gc_since = t

    def _gc_busy(self, t: int, p: bytes) -> None:
        if self.state.gc_since is None:
            self.state.gc_since = t

    def _gc_end(self, t: int, p: bytes) -> None:
        self.state.gc_since = None

    # -- capsets ---------------------------------------------------------------------------

    def _capset(self, p: bytes, t: int) -> CapsetState | None:
        (cs,) = _U32.unpack_from(p)
        c = self.state.capsets.get(cs)
        if c is not None:
            c.last_change = t
        return c

    def _capset_create(self, t: int, p: bytes) -> None:
        cs, kind = _U32U16.unpack_from(p)
        self.state.capsets[cs] = _new_capset(cs, CAPSET_TYPES.get(kind, "unknown"), t)

    def _capset_delete(self, t: int, p: bytes) -> None:
        self.state.capsets.pop(_U32.unpack_from(p)[0], None)

    def _assign(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            c.caps.append(_U32U16.unpack_from(p)[1])

    def _remove(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        cap = _U32U16.unpack_from(p)[1]
        if c is not None and cap in c.caps:
            c.caps.remove(cap)

    def _rts_ident(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            c.rts_ident = p[4:].decode("utf-8", "replace")

    def _args(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            c.args = _strings(p[4:])

    def _env(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            c.env = _strings(p[4:])

    def _pid(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            c.pid = _U32.unpack_from(p, 4)[0]

    def _ppid(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            c.ppid = _U32.unpack_from(p, 4)[0]

    def _wall(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            _, c.wall_sec, c.wall_nsec = _WALL.unpack_from(p)

    def _heap(self, index: int) -> Callable[[int, bytes], None]:
        name = ("heap_allocated", "heap_size", "heap_live")[index - 13]

        def handler(t: int, p: bytes) -> None:
            c = self._capset(p, t)
            if c is not None:
                setattr(c, name, _U32U64.unpack_from(p)[1])
        return handler

    def _heap_info(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            (_, c.generations, c.max_heap_size, c.alloc_area_size, c.mblock_size,
             c.block_size) = _HEAP_INFO.unpack_from(p)

    def _gc_stats(self, t: int, p: bytes) -> None:
        c = self._capset(p, t)
        if c is not None:
            (_, c.generations, c.gc_copied, c.gc_slop, c.gc_frag, c.gc_par_threads,
             c.gc_par_max_copied, c.gc_par_tot_copied) = _GC_STATS.unpack_from(p)
            c.last_gc = t

    # -- capabilities and tasks ----------------------------------------------------------

    def _cap_create(self, t: int, p: bytes) -> None:
        (cap,) = _U16.unpack_from(p)
        self.state.caps[cap] = CapState(cap, False, t, t)

    def _cap_delete(self, t: int, p: bytes) -> None:
        self.state.caps.pop(_U16.unpack_from(p)[0], None)

    def _cap_flag(self, disabled: bool) -> Callable[[int, bytes], None]:
        def handler(t: int, p: bytes) -> None:
            c = self.state.caps.get(_U16.unpack_from(p)[0])
            if c is not None:
                c.disabled, c.last_change = disabled, t
        return handler

    def _task_create(self, t: int, p: bytes) -> None:
        task, cap, kernel = _TASK.unpack_from(p)
        self.state.tasks[task] = TaskState(task, cap, kernel, t, t)

    def _task_migrate(self, t: int, p: bytes) -> None:
        task, _, new_cap = _TASK_MIGRATE.unpack_from(p)
        ts = self.state.tasks.get(task)
        if ts is not None:
            ts.cap, ts.last_change = new_cap, t

    def _task_delete(self, t: int, p: bytes) -> None:
        self.state.tasks.pop(_U64.unpack_from(p)[0], None)


def program_name(state: EventlogState) -> str | None:
    """The program's name: the file name of the first argument of the OS
    process capset (as liveprof names an app from its eventlog)."""
    for c in state.capsets.values():
        if c.capset != AGENT_CAPSET and c.args and c.args[0]:
            return c.args[0].replace("\\", "/").rsplit("/", 1)[-1]
    return None


def agent_capset(app: str | None, host: str, program: str | None = None,
                 version: str = "") -> CapsetState:
    """The capset that names the agent, its host, the app it was given and
    the program's name (6.7)."""
    c = _new_capset(AGENT_CAPSET, "custom", 0)
    c.rts_ident = f"{AGENT_IDENT} {version}".strip()
    c.args = [f"host={host}", "blocks=1"]
    c.args += [f"app={app}"] if app else []
    c.args += [f"program={program}"] if program else []
    return c


def agent_identity(state: EventlogState | None) -> dict[str, str] | None:
    """``{"host": ..., "app": ..., "program": ..., "blocks": "1"}`` from a snapshot that
    carries the agent's capset, else None."""
    if state is None:
        return None
    c = state.capsets.get(AGENT_CAPSET)
    if c is None or c.type != "custom" or not c.rts_ident.startswith(AGENT_IDENT):
        return None
    out: dict[str, str] = {}
    for arg in c.args[:8]:
        key, sep, value = arg.partition("=")
        if sep and key in ("host", "app", "program", "blocks") and 0 < len(value) <= 255:
            out[key] = value
    return out
