"""A test monitor: the *sender* side of the live-profile-monitor protocol,
written from ``shared/spec/monitor-protocol.md`` (and ``eventlog-format.md``)
alone, so that tests can check liveprof's receiver against an independent
implementation.  It deliberately does not import liveprof's ``protocol``
package; it uses ``cbor2`` and the standard library only.

Pieces, in spec order:

* ``split_eventlog``: a ``.eventlog`` file cut into the header's event-type
  records (re-encoded as spec 5.1) and raw event records (spec 5.2), block
  markers removed.
* message encoders (spec 4): CBOR bodies of every ``ProfileMsg`` variant,
  ``frame`` for the TCP length prefix, ``Splitter`` for spec 7.1.
* ``EventlogState``: the snapshot fold of spec 6 and its CBOR encoding.
* ``TcpMonitor``: a threaded TCP server that serves one log per connection
  (spec 2.3, 3.1).
* ``datagram_bodies`` / ``send_datagrams``: the datagram framing of spec 3.3.
* ``rebuild_eventlog`` / ``reference_receive``: spec 5.3 and a minimal
  reference receiver, used by this package's own tests.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cbor2

# -- eventlog (eventlog-format.md section 1) -------------------------------------

HDRB, HETB, HETE, HDRE, DATB = b"hdrb", b"hetb", b"hete", b"hdre", b"datb"
ETB, ETE = b"etb\0", b"ete\0"
END_OF_DATA = b"\xff\xff"
VARIABLE = 0xFFFF
BLOCK_MARKER = 18

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_REC = struct.Struct(">HQ")
_DECL = struct.Struct(">HHI")


class EventlogError(ValueError):
    """The file is not an eventlog this module can cut up."""


@dataclass
class Eventlog:
    """A parsed log: event-type records (spec 5.1 form), raw event records
    (block markers removed), and what is needed to read the records back."""

    type_records: list[bytes]
    event_records: list[bytes]
    sizes: dict[int, int]  # declared payload size per type id, VARIABLE = variable
    complete: bool  # the end-of-data marker was found

    def parsed(self) -> list[tuple[int, int, bytes]]:
        """(type, timestamp, payload) of every event record."""
        return [parse_record(r, self.sizes) for r in self.event_records]


def type_record(type_id: int, size: int | None, description: bytes | str) -> bytes:
    """One event-type record as the monitor re-encodes it (spec 5.1): extra
    info dropped (length 0).  ``size`` None means variable."""
    if isinstance(description, str):
        description = description.encode("utf-8")
    return (ETB + _DECL.pack(type_id, VARIABLE if size is None else size, len(description))
            + description + _U32.pack(0) + ETE)


def parse_record(record: bytes, sizes: dict[int, int]) -> tuple[int, int, bytes]:
    """(type, timestamp, payload) of one raw event record."""
    type_id, t = _REC.unpack_from(record, 0)
    if sizes.get(type_id) == VARIABLE:
        return type_id, t, bytes(record[12:])
    return type_id, t, bytes(record[10:])


def load_eventlog(data: bytes) -> Eventlog:
    """Cut a standard GHC eventlog.  Raises ``EventlogError`` on a malformed or
    cut header or an undeclared event type; a data section cut short (no end
    marker, partial last record) yields the complete records."""
    data = bytes(data)
    n = len(data)

    def need(pos: int, count: int, what: str) -> None:
        if pos + count > n:
            raise EventlogError(f"eventlog cut inside the header ({what}) at offset {pos}")

    need(0, 8, "magic")
    if data[0:4] != HDRB or data[4:8] != HETB:
        raise EventlogError("not an eventlog: no 'hdrb' 'hetb' at the start")
    pos = 8
    types: list[bytes] = []
    sizes: dict[int, int] = {}
    while True:
        need(pos, 4, "declaration marker")
        marker = data[pos:pos + 4]
        if marker == HETE:
            pos += 4
            break
        if marker != ETB:
            raise EventlogError(f"expected 'etb' or 'hete' at offset {pos}, got {marker!r}")
        need(pos + 4, 8, "declaration")
        type_id, size, dlen = _DECL.unpack_from(data, pos + 4)
        p = pos + 12
        need(p, dlen + 4, "description")
        desc = data[p:p + dlen]
        p += dlen
        (xlen,) = _U32.unpack_from(data, p)
        p += 4
        need(p, xlen + 4, "extra info")
        p += xlen
        if data[p:p + 4] != ETE:
            raise EventlogError(f"event type {type_id}: no 'ete' at offset {p}")
        pos = p + 4
        sizes[type_id] = size
        types.append(type_record(type_id, None if size == VARIABLE else size, desc))
    need(pos, 8, "header end")
    if data[pos:pos + 4] != HDRE or data[pos + 4:pos + 8] != DATB:
        raise EventlogError(f"no 'hdre' 'datb' at offset {pos}")
    pos += 8

    events: list[bytes] = []
    complete = False
    while pos + 2 <= n:
        (type_id,) = _U16.unpack_from(data, pos)
        if type_id == 0xFFFF:
            complete = True
            break
        if pos + 10 > n:
            break
        size = sizes.get(type_id)
        if size is None:
            raise EventlogError(f"event type {type_id} at offset {pos} is not declared")
        if size == VARIABLE:
            if pos + 12 > n:
                break
            end = pos + 12 + _U16.unpack_from(data, pos + 10)[0]
        else:
            end = pos + 10 + size
        if end > n:
            break
        if type_id != BLOCK_MARKER:
            events.append(data[pos:end])
        pos = end
    return Eventlog(types, events, sizes, complete)


def split_eventlog(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """(type records as spec 5.1, event records as spec 5.2 in file order
    without block markers)."""
    log = load_eventlog(data)
    return log.type_records, log.event_records


def _read_log(source: str | os.PathLike | bytes | Eventlog) -> Eventlog:
    if isinstance(source, Eventlog):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return load_eventlog(bytes(source))
    with open(source, "rb") as f:
        return load_eventlog(f.read())


def rebuild_eventlog(type_records: Iterable[bytes], event_records: Iterable[bytes],
                     end: bool = True) -> bytes:
    """Spec 5.3: hdrb hetb records hete hdre datb events 0xffff."""
    out = bytearray(HDRB + HETB)
    for r in type_records:
        out += r
    out += HETE + HDRE + DATB
    for e in event_records:
        out += e
    if end:
        out += END_OF_DATA
    return bytes(out)


# -- CBOR (spec 4.1) ------------------------------------------------------------


class Indefinite:
    """A non-empty Haskell list (``[a]`` other than String): encoded as an
    indefinite-length array 0x9f ... 0xff."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence):
        self.items = list(items)


def _default(encoder, value) -> None:
    if isinstance(value, Indefinite):
        encoder.write(b"\x9f")
        for item in value.items:
            encoder.encode(item)
        encoder.write(b"\xff")
        return
    raise TypeError(f"cannot encode {type(value).__name__}")


def hs_list(items: Sequence):
    """A Haskell ``[a]``: ``[]`` is 0x80, otherwise an indefinite array."""
    return Indefinite(items) if items else []


def maybe(value) -> list:
    """A Haskell ``Maybe``: Nothing = [], Just x = [x]."""
    return [] if value is None else [value]


def cbor(value) -> bytes:
    """CBOR of a value built from ints, bools, bytes, str, lists (definite),
    dicts (definite maps, insertion order) and ``Indefinite``.  cbor2 always
    writes integers in their shortest form."""
    return cbor2.dumps(value, default=_default)


# -- messages (spec 4.2) ----------------------------------------------------------

# EventMsgPartial values
def _full(payload: bytes) -> list:
    return [0, bytes(payload)]


def _split_header(msg_id: int, parts: int) -> list:
    return [1, [0, msg_id, parts]]


def _part(msg_id: int, part_no: int, chunk: bytes) -> list:
    return [2, msg_id, part_no, bytes(chunk)]


def _profile_event(partial: list) -> bytes:
    return cbor([2, [1, partial]])


def _profile_state(partial: list) -> bytes:
    return cbor([3, partial])


def service_pause(pause: bool) -> bytes:
    """ProfileService (ServicePause b)."""
    return cbor([0, [0, bool(pause)]])


def header_length(n: int) -> bytes:
    """ProfileHeader (HeaderLength n)."""
    return cbor([1, [0, n]])


def header_type(record: bytes) -> bytes:
    """ProfileHeader (HeaderType record)."""
    return cbor([1, [1, bytes(record)]])


def event_full(payload: bytes) -> bytes:
    """ProfileEvent (EventMsg (EventMsgFull payload))."""
    return _profile_event(_full(payload))


def event_split_header(msg_id: int, parts: int) -> bytes:
    """ProfileEvent (EventMsg (EventMsgPartial (EventPartialData id parts)))."""
    return _profile_event(_split_header(msg_id, parts))


def event_part(msg_id: int, part_no: int, chunk: bytes) -> bytes:
    """ProfileEvent (EventMsg (EventMsgPart id partNo chunk))."""
    return _profile_event(_part(msg_id, part_no, chunk))


def profile_state(payload: bytes) -> bytes:
    """ProfileState (EventMsgFull payload); payload is a CBOR EventlogState."""
    return _profile_state(_full(payload))


def state_split_header(msg_id: int, parts: int) -> bytes:
    return _profile_state(_split_header(msg_id, parts))


def state_part(msg_id: int, part_no: int, chunk: bytes) -> bytes:
    return _profile_state(_part(msg_id, part_no, chunk))


def block_header(block_id: int, begin: int, end: int, cap: int | None, size: int) -> bytes:
    """ProfileEvent (EventBlockMsg (EventBlockMsgHeader ...)); ``cap`` None is
    global (0 on the wire), capability c is c+1."""
    return cbor([2, [0, [0, [0, block_id, begin, end, 0 if cap is None else cap + 1, size]]]])


def block_part(block_id: int, payload: bytes) -> bytes:
    """ProfileEvent (EventBlockMsg (EventBlockMsgPart blockId (EventMsgFull payload)))."""
    return cbor([2, [0, [1, block_id, _full(payload)]]])


def block_part_split(block_id: int, partial: list) -> bytes:
    """EventBlockMsgPart around any EventMsgPartial value (``[0, b]``,
    ``[1, [0, id, k]]`` or ``[2, id, n, b]``)."""
    return cbor([2, [0, [1, block_id, partial]]])


def frame(body: bytes) -> bytes:
    """TCP framing (spec 3.1): uint32 big-endian length, then the body."""
    return _U32.pack(len(body)) + body


class Splitter:
    """Spec 7.1: one per connection (or datagram sender).  ``max_size`` None
    means no limit.  The message id counter is shared by events and
    snapshots."""

    def __init__(self, max_size: int | None = None, first_id: int = 0):
        if max_size is not None and max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.next_id = first_id

    def _split(self, payload: bytes, full, header, part) -> list[bytes]:
        m = self.max_size
        if m is None or len(payload) <= m:
            return [full(payload)]
        msg_id = self.next_id
        self.next_id += 1
        chunks = [payload[i:i + m] for i in range(0, len(payload), m)]
        return [header(msg_id, len(chunks))] + [part(msg_id, i, c) for i, c in enumerate(chunks)]

    def event(self, payload: bytes) -> list[bytes]:
        """Bodies carrying one event payload."""
        return self._split(bytes(payload), event_full, event_split_header, event_part)

    def state(self, payload: bytes) -> list[bytes]:
        """Bodies carrying one EventlogState payload."""
        return self._split(bytes(payload), profile_state, state_split_header, state_part)


# -- EventlogState (spec 6) ---------------------------------------------------------

# ThreadStopStatus: eventlog status code (monitor spec 5.2 numbering) ->
# constructor number in declaration order (spec 6.2).  Code 8 with an owner
# becomes BlockedOnBlackHoleOwnedBy (20).
STOP_STATUS_CONSTRUCTOR = {
    0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7,
    20: 8,  # BlockedOnMVarRead
    8: 9,  # BlockedOnBlackHole
    9: 10, 10: 11, 11: 12, 12: 13, 13: 14, 14: 15, 15: 16, 16: 17, 17: 18, 18: 19,
}
THREAD_FINISHED = 5
BLACK_HOLE_OWNED_BY = 20

# CapsetType: eventlog numbering -> declaration order (custom, OS process,
# clock domain, unknown)
CAPSET_TYPE_CONSTRUCTOR = {1: 0, 2: 1, 3: 2, 0: 3}

EXEC_CREATED, EXEC_QUEUED, EXEC_RUNNING, EXEC_STOPPED, EXEC_MIGRATED = range(5)


def hs_string(raw: bytes) -> str:
    """An eventlog string as the 2016 parser reads it: one character per byte."""
    return raw.decode("latin-1")


@dataclass
class ThreadState:
    thread: int
    created: int
    label: str | None = None
    cap: int = -1
    execution: list = field(default_factory=lambda: [EXEC_CREATED])
    sparks: int | None = None
    changed: int = 0

    def encode(self) -> list:
        return [0, self.thread, maybe(self.label), self.cap, list(self.execution),
                maybe(self.sparks), self.created, self.changed]


@dataclass
class CapsetState:
    capset: int
    kind: int  # constructor number (declaration order)
    created: int
    changed: int
    caps: list[int] = field(default_factory=list)
    rts_id: str = ""
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    pid: int | None = None
    ppid: int | None = None
    wall_sec: int = 0
    wall_nsec: int = 0
    heap_alloc: int = 0
    heap_size: int = 0
    heap_live: int = 0
    heap_gens: int = 0
    heap_max: int = 0
    alloc_area: int = 0
    mblock: int = 0
    block: int = 0
    last_gc: int | None = None
    gc_copied: int = 0
    gc_slop: int = 0
    gc_frag: int = 0
    gc_par_threads: int = 0
    gc_par_max_copied: int = 0
    gc_par_tot_copied: int = 0

    def encode(self) -> list:
        return [0, self.capset, [self.kind], list(self.caps), self.changed, self.created,
                self.rts_id, hs_list(self.args), hs_list(self.env), maybe(self.pid),
                maybe(self.ppid), self.wall_sec, self.wall_nsec, self.heap_alloc,
                self.heap_size, self.heap_live, self.heap_gens, self.heap_max,
                self.alloc_area, self.mblock, self.block, maybe(self.last_gc),
                self.gc_copied, self.gc_slop, self.gc_frag, self.gc_par_threads,
                self.gc_par_max_copied, self.gc_par_tot_copied]


@dataclass
class CapState:
    cap: int
    created: int
    changed: int
    disabled: bool = False

    def encode(self) -> list:
        return [0, self.cap, self.disabled, self.changed, self.created]


@dataclass
class TaskState:
    task: int
    cap: int
    kernel_tid: int
    created: int
    changed: int

    def encode(self) -> list:
        return [0, self.task, self.cap, [0, self.kernel_tid], self.created, self.changed]


def _cstrings(raw: bytes) -> list[str]:
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [hs_string(p) for p in parts]


class EventlogState:
    """The monitor's fold of every event (spec 6).  ``apply(type, time,
    payload)`` folds one event; ``encode()`` is the CBOR payload of
    ``ProfileState``.  Unknown or short events are ignored."""

    THREAD_EVENTS = frozenset({0, 1, 2, 3, 4, 15, 44})
    GC_EVENTS = frozenset({9, 10, 20, 21, 22, 54})
    CAPSET_EVENTS = frozenset(range(25, 34)) | {43, 49, 50, 51, 52, 53}
    CAP_EVENTS = frozenset({45, 46, 47, 48})
    TASK_EVENTS = frozenset({55, 56, 57})

    def __init__(self):
        self.threads: dict[int, ThreadState] = {}
        self.capsets: dict[int, CapsetState] = {}
        self.caps: dict[int, CapState] = {}
        self.tasks: dict[int, TaskState] = {}
        self.gc: int | None = None
        self.last_update = 0

    @classmethod
    def fold(cls, events: Iterable[tuple[int, int, bytes]]) -> EventlogState:
        state = cls()
        for type_id, t, payload in events:
            state.apply(type_id, t, payload)
        return state

    def encode(self) -> bytes:
        return cbor([
            0,
            {k: v.encode() for k, v in self.threads.items()},
            {k: v.encode() for k, v in self.capsets.items()},
            {k: v.encode() for k, v in self.caps.items()},
            {k: v.encode() for k, v in self.tasks.items()},
            maybe(self.gc),
            self.last_update,
        ])

    def apply(self, type_id: int, t: int, p: bytes) -> None:
        try:
            touched = self._apply(type_id, t, p)
        except struct.error:  # payload shorter than the layout: ignore the event
            return
        if touched:
            self.last_update = t

    def _apply(self, e: int, t: int, p: bytes) -> bool:
        u16 = lambda off: _U16.unpack_from(p, off)[0]  # noqa: E731
        u32 = lambda off: _U32.unpack_from(p, off)[0]  # noqa: E731
        u64 = lambda off: struct.unpack_from(">Q", p, off)[0]  # noqa: E731

        if e in self.THREAD_EVENTS:
            tid = u32(0)
            th = self.threads.get(tid)
            if e in (0, 15):
                self.threads[tid] = ThreadState(tid, t, sparks=0 if e == 15 else None, changed=t)
            elif e == 44:
                if th is not None:
                    th.label = hs_string(p[4:])
            elif th is not None:
                if e == 1:
                    th.execution = [EXEC_RUNNING]
                elif e == 3:
                    th.execution = [EXEC_QUEUED]
                elif e == 4:
                    th.execution = [EXEC_MIGRATED]
                    th.cap = u16(4)
                elif e == 2:
                    code = u16(4)
                    owner = u32(6) if len(p) >= 10 else 0
                    if code == THREAD_FINISHED:
                        del self.threads[tid]
                        return True
                    if code == 8 and owner:
                        th.execution = [EXEC_STOPPED, [BLACK_HOLE_OWNED_BY, owner]]
                    else:
                        th.execution = [EXEC_STOPPED, [STOP_STATUS_CONSTRUCTOR.get(code, 0)]]
                th.changed = t
            return True

        if e in self.GC_EVENTS:
            if e == 9:
                self.gc = t
            elif e in (20, 21, 54):
                if self.gc is None:
                    self.gc = t
            else:  # 10 GC end, 22 GC done
                self.gc = None
            return True

        if e in self.CAPSET_EVENTS:
            cs_id = u32(0)
            if e == 25:
                kind = CAPSET_TYPE_CONSTRUCTOR.get(u16(4), 3)
                self.capsets[cs_id] = CapsetState(cs_id, kind, created=t, changed=t)
                return True
            if e == 26:
                self.capsets.pop(cs_id, None)
                return True
            cs = self.capsets.get(cs_id)
            if cs is None:
                return True
            if e == 27:
                cs.caps.append(u16(4))
            elif e == 28:
                cap = u16(4)
                if cap in cs.caps:
                    cs.caps.remove(cap)
            elif e == 29:
                cs.rts_id = hs_string(p[4:])
            elif e == 30:
                cs.args = _cstrings(p[4:])
            elif e == 31:
                cs.env = _cstrings(p[4:])
            elif e == 32:
                cs.pid = u32(4)
            elif e == 33:
                cs.ppid = u32(4)
            elif e == 43:
                cs.wall_sec, cs.wall_nsec = u64(4), u32(12)
            elif e == 49:
                cs.heap_alloc = u64(4)
            elif e == 50:
                cs.heap_size = u64(4)
            elif e == 51:
                cs.heap_live = u64(4)
            elif e == 52:
                cs.heap_gens = u16(4)
                cs.heap_max, cs.alloc_area, cs.mblock, cs.block = struct.unpack_from(">4Q", p, 6)
            elif e == 53:
                cs.heap_gens = u16(4)  # upstream quirk: the GC generation overwrites it
                cs.gc_copied, cs.gc_slop, cs.gc_frag = struct.unpack_from(">3Q", p, 6)
                cs.gc_par_threads = u32(30)
                cs.gc_par_max_copied, cs.gc_par_tot_copied = struct.unpack_from(">2Q", p, 34)
                cs.last_gc = t
            cs.changed = t
            return True

        if e in self.CAP_EVENTS:
            cap = u16(0)
            if e == 45:
                self.caps[cap] = CapState(cap, created=t, changed=t)
            elif e == 46:
                self.caps.pop(cap, None)
            elif cap in self.caps:
                self.caps[cap].disabled = e == 47
                self.caps[cap].changed = t
            return True

        if e in self.TASK_EVENTS:
            task = u64(0)
            if e == 55:
                self.tasks[task] = TaskState(task, u16(8), u64(10), created=t, changed=t)
            elif e == 56:
                if task in self.tasks:
                    self.tasks[task].cap = u16(10)
                    self.tasks[task].changed = t
            else:
                self.tasks.pop(task, None)
            return True
        return False


# -- the per-connection message sequence (spec 2.3) ------------------------------------


def header_bodies(log: Eventlog) -> list[bytes]:
    """HeaderLength n, then n HeaderType."""
    return [header_length(len(log.type_records))] + [header_type(r) for r in log.type_records]


def stream_bodies(source, *, max_size: int | None = None, snapshot_after: int | None = 0,
                  splitter: Splitter | None = None) -> list[bytes]:
    """Every body one TCP connection gets: snapshot (state after the first
    ``snapshot_after`` events, None = all), header, events."""
    log = _read_log(source)
    sp = splitter or Splitter(max_size)
    parsed = log.parsed()
    upto = len(parsed) if snapshot_after is None else snapshot_after
    out = sp.state(EventlogState.fold(parsed[:upto]).encode())
    out += header_bodies(log)
    for rec in log.event_records:
        out += sp.event(rec)
    return out


# -- TCP (spec 2, 3.1) ------------------------------------------------------------


def _per_conn(option, index: int):
    return option(index) if callable(option) else option


class TcpMonitor:
    """A threaded TCP monitor on 127.0.0.1 (port 0 = a free port) serving one
    eventlog to every accepted connection: state snapshot frame(s),
    HeaderLength n, n HeaderType, events, each as a length-prefixed frame.

    Options (each of ``close_after``, ``raw``, ``extra_frames`` may also be a
    function of the 0-based connection index):

    * ``max_size``: split payloads longer than this (spec 7.1); None = never.
    * ``snapshot_after``: the snapshot folds the first N events (0 = empty
      state, None = all of them).
    * ``close_after``: close the connection after K events (reconnect tests),
      even with ``hold_open``.
    * ``resume``: the next connection continues with the events the previous
      ones did not send (the upstream shared channel, spec 2.5); otherwise
      every connection gets the whole log.
    * ``raw``: bytes sent as they are instead of the normal stream (garbage,
      a huge length prefix, hand-made frames); then the connection closes
      (unless ``hold_open``).
    * ``prefix``: raw bytes sent before the normal stream.
    * ``extra_frames``: bodies framed and sent after the header, before the
      events (bad-input tests: wrong types, split headers that never
      complete, ...).
    * ``state_every``: re-send a snapshot every N events (as on a pause toggle).
    * ``hold_open``: after the last event keep the connection open until
      ``stop()`` (a live monitor with nothing more to say); otherwise close.
    * ``event_delay``: seconds to sleep between events.
    * ``max_connections``: stop accepting after this many.
    """

    def __init__(self, source, *, max_size: int | None = None, snapshot_after: int | None = 0,
                 close_after=None, resume: bool = False, raw=None, prefix: bytes = b"",
                 extra_frames=None, state_every: int | None = None, hold_open: bool = False,
                 event_delay: float = 0.0, max_connections: int | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.log = _read_log(source)
        self._parsed = self.log.parsed()
        self.max_size = max_size
        self.snapshot_after = snapshot_after
        self.close_after = close_after
        self.resume = resume
        self.raw = raw
        self.prefix = prefix
        self.extra_frames = extra_frames
        self.state_every = state_every
        self.hold_open = hold_open
        self.event_delay = event_delay
        self.max_connections = max_connections
        self._host, self._want_port = host, port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._next_event = 0  # for resume
        self.port = 0
        self.connections = 0  # accepted so far
        self.finished = 0  # connections whose handler has returned
        self.events_sent = 0  # event payloads sent, over all connections
        self.errors: list[BaseException] = []  # send failures (peer gone)

    # lifecycle
    def start(self) -> TcpMonitor:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self._host, self._want_port))
        s.listen(16)
        s.settimeout(0.1)
        self._sock = s
        self.port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="fake-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for w in list(self._workers):
            w.join(5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> TcpMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self._host, self.port)

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until ``n`` connections have been accepted."""
        with self._cond:
            return self._cond.wait_for(lambda: self.connections >= n, timeout)

    def wait_finished(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until ``n`` connection handlers have finished sending."""
        with self._cond:
            return self._cond.wait_for(lambda: self.finished >= n, timeout)

    # serving
    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            if self.max_connections is not None and self.connections >= self.max_connections:
                self._sock.close()
                return
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._cond:
                index = self.connections
                self.connections += 1
                self._conns.add(conn)
                self._cond.notify_all()
            w = threading.Thread(target=self._serve, args=(conn, index), daemon=True,
                                 name=f"fake-monitor-conn-{index}")
            self._workers.append(w)
            w.start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        try:
            cut = self._send_stream(conn, index)
            if not cut and _per_conn(self.hold_open, index):
                self._stop.wait()
        except OSError as err:  # peer gone: the monitor notices only on send
            self.errors.append(err)
        finally:
            try:
                conn.close()
            finally:
                with self._cond:
                    self._conns.discard(conn)
                    self.finished += 1
                    self._cond.notify_all()

    def _send_stream(self, conn: socket.socket, index: int) -> bool:
        """Send one connection's bytes; True if ``close_after`` cut it short."""
        raw = _per_conn(self.raw, index)
        if raw is not None:
            conn.sendall(raw)
            return False
        if self.prefix:
            conn.sendall(self.prefix)
        sp = Splitter(self.max_size)

        def send(bodies: list[bytes]) -> None:
            conn.sendall(b"".join(frame(b) for b in bodies))

        with self._lock:
            start = self._next_event if self.resume else 0
        upto = self.snapshot_after
        snap = len(self._parsed) if upto is None else min(upto + start, len(self._parsed))
        send(sp.state(EventlogState.fold(self._parsed[:snap]).encode()))
        send(header_bodies(self.log))
        send(list(_per_conn(self.extra_frames, index) or []))
        limit = _per_conn(self.close_after, index)
        sent = 0
        i = start
        records = self.log.event_records
        while i < len(records) and not self._stop.is_set():
            if limit is not None and sent >= limit:
                return True
            if self.resume:
                with self._lock:  # the shared channel: each event goes to one connection
                    i = self._next_event
                    if i >= len(records):
                        break
                    self._next_event += 1
            if self.state_every and sent and sent % self.state_every == 0:
                send(sp.state(EventlogState.fold(self._parsed[:i]).encode()))
            send(sp.event(records[i]))
            sent += 1
            i += 1
            with self._lock:
                self.events_sent += 1
            if self.event_delay:
                time.sleep(self.event_delay)
        return False


# -- datagrams (spec 3.3) -----------------------------------------------------------

DATAGRAM_MAX_PAYLOAD = 1200
DATAGRAM_LIMIT = 1400


def datagram_bodies(source, *, max_size: int = DATAGRAM_MAX_PAYLOAD,
                    repeat_header_every: int | None = None,
                    snapshot_after: int | None = 0) -> list[bytes]:
    """The datagrams (CBOR bodies, no prefix) of one log in sending order:
    snapshot, header, events; with ``repeat_header_every`` N, a fresh snapshot
    (state so far) and the whole header again after every N events.  One
    splitter, so message ids run from 0 over events and snapshots."""
    log = _read_log(source)
    sp = Splitter(max_size)
    parsed = log.parsed()
    state = EventlogState.fold(parsed[:len(parsed) if snapshot_after is None else snapshot_after])
    folded = len(parsed) if snapshot_after is None else snapshot_after
    header = header_bodies(log)
    out = sp.state(state.encode()) + header
    for i, rec in enumerate(log.event_records):
        if repeat_header_every and i and i % repeat_header_every == 0:
            while folded < i:
                state.apply(*parsed[folded])
                folded += 1
            out += sp.state(state.encode()) + header
        out += sp.event(rec)
    for b in out:
        if len(b) >= DATAGRAM_LIMIT:
            raise ValueError(f"datagram of {len(b)} bytes: not under {DATAGRAM_LIMIT}")
    return out


def mangle(bodies: Sequence[bytes], *, reorder: bool | int = False, duplicate: float = 0.0,
           drop: float = 0.0, seed: int = 0) -> list[bytes]:
    """What a network may do: drop a fraction, duplicate a fraction (the copy
    follows its original), then reorder: True = full shuffle, an int w =
    each datagram moves by less than about w places."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for b in bodies:
        if drop and rng.random() < drop:
            continue
        out.append(b)
        if duplicate and rng.random() < duplicate:
            out.append(b)
    if reorder is True:
        rng.shuffle(out)
    elif reorder:
        w = int(reorder)
        keyed = sorted((i + rng.uniform(0, w), i) for i in range(len(out)))
        out = [out[i] for _, i in keyed]
    return out


def send_datagrams(source, addr: tuple[str, int], *, max_size: int = DATAGRAM_MAX_PAYLOAD,
                   reorder: bool | int = False, duplicate: float = 0.0,
                   repeat_header_every: int | None = None, seed: int = 0, drop: float = 0.0,
                   snapshot_after: int | None = 0, burst: int = 64, interval: float = 0.0,
                   sock: socket.socket | None = None) -> list[bytes]:
    """Send a log as UDP datagrams (spec 3.3) to ``addr`` from one socket (one
    session).  Pass ``sock`` to choose the source address, ``interval``
    seconds to pause after every ``burst`` datagrams (so a slow receiver's
    buffer does not overflow).  Returns the datagrams in the order sent."""
    bodies = mangle(datagram_bodies(source, max_size=max_size,
                                    repeat_header_every=repeat_header_every,
                                    snapshot_after=snapshot_after),
                    reorder=reorder, duplicate=duplicate, drop=drop, seed=seed)
    own = sock is None
    if own:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for i, b in enumerate(bodies):
            sock.sendto(b, addr)
            if interval and (i + 1) % burst == 0:
                time.sleep(interval)
    finally:
        if own:
            sock.close()
    return bodies


# -- a minimal reference receiver, for this package's own tests --------------------------


@dataclass
class Received:
    states: list = field(default_factory=list)  # decoded EventlogState values
    header_length: int | None = None
    type_records: list[bytes] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    block_headers: list = field(default_factory=list)
    pauses: list[bool] = field(default_factory=list)

    def eventlog(self) -> bytes:
        return rebuild_eventlog(self.type_records, self.events)


def read_frames(data: bytes) -> list[bytes]:
    """Cut a TCP byte stream into frame bodies (an incomplete last frame is left out)."""
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = _U32.unpack_from(data, pos)
        if pos + 4 + n > len(data):
            break
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def reference_receive(bodies: Iterable[bytes]) -> Received:
    """Decode bodies (in any order for split parts; header records placed by
    type id; repeated headers and duplicate split parts ignored).  Strict:
    anything off the spec raises."""
    r = Received()
    pending: dict[tuple[str, int], dict] = {}
    done: set[tuple[str, int]] = set()
    types: dict[int, bytes] = {}

    def deliver(kind: str, payload: bytes) -> None:
        if kind == "state":
            r.states.append(cbor2.loads(payload))
        else:
            r.events.append(payload)

    def partial(kind: str, msg) -> None:
        tag = msg[0]
        if tag == 0:
            deliver(kind, msg[1])
            return
        key = (kind, msg[1][1] if tag == 1 else msg[1])
        if key in done:
            return
        entry = pending.setdefault(key, {"parts": None, "chunks": {}})
        if tag == 1:
            entry["parts"] = msg[1][2]
        elif tag == 2:
            entry["chunks"].setdefault(msg[2], msg[3])
        else:
            raise ValueError(f"bad EventMsgPartial tag {tag}")
        if entry["parts"] is not None and len(entry["chunks"]) >= entry["parts"]:
            chunks = entry["chunks"]
            deliver(kind, b"".join(chunks[i] for i in range(entry["parts"])))
            del pending[key]
            done.add(key)

    for body in bodies:
        msg = cbor2.loads(body)
        tag, inner = msg
        if tag == 0:
            r.pauses.append(inner[1])
        elif tag == 1:
            if inner[0] == 0:
                r.header_length = inner[1]
            else:
                rec = inner[1]
                types.setdefault(_U16.unpack_from(rec, 4)[0], rec)
        elif tag == 2:
            if inner[0] == 1:
                partial("event", inner[1])
            elif inner[1][0] == 0:
                r.block_headers.append(inner[1][1])
            else:
                partial("event", inner[1][2])
        elif tag == 3:
            partial("state", inner)
        else:
            raise ValueError(f"bad ProfileMsg tag {tag}")
    if pending:
        raise ValueError(f"incomplete split messages: {sorted(pending)}")
    r.type_records = list(types.values())
    return r
