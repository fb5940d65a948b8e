"""The pipeline's fault guard (docs/schema.md, "Stream faults"): a jump in
eventlog time past ``max_gap_ns`` (or a time past ``MAX_TIME``) ends the
stream's points; a deriver that raises ends only its own measurement.  A mixin
of ``Pipeline``, which holds the state it uses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .base import DeriveFault
from .order import _Late

if TYPE_CHECKING:
    from .order import Merge

# eventlog times beyond this (146 years after the RTS started) are corrupt: anchored
# at today's Unix time, no point could be written with them past 2262 (InfluxDB's end)
MAX_TIME = 1 << 62

log = logging.getLogger("liveprof.derive")


class FaultGuard:
    """``_jump`` checks each slice of released events before it is routed;
    ``_arrival_fault`` is for a live merge that a jump stopped."""

    # the state it works on, held by the Pipeline (declared here for the type checker only)
    merge: Merge
    derivers: list[Any]  # Deriver or _Dead
    stream_fault: str | None
    deriver_faults: dict[str, str]
    _wanting: dict[int, list[Any]]  # type id -> derivers that want it
    _events: int
    _dropped: int
    _max_gap: int
    _last: int | None
    _tags: dict[str, str] | None

    def _arrival_fault(self) -> None:
        merge = self.merge
        ev = merge.jumped
        if self.stream_fault is None:
            self.stream_fault = (
                f"time jump: an event arriving after event {self._events} of the stream "
                f"({_show(ev)}) is over derive.max_gap ({self._max_gap} ns) past the newest "
                f"before it; the stream's points end before it")
            log.warning("%s%s", self._who(), self.stream_fault)
        self._dropped += merge.jump_dropped

    def _jump(self, items: list, lo: int, hi: int) -> int:
        """The index in ``items[lo:hi]`` of the first event (not late) more than
        ``max_gap_ns`` after the one before it, or beyond ``MAX_TIME``; ``hi``
        if none.  Released events that are not late come in time order, so the
        slice's last one tells whether to look closer; ``_last`` follows them."""
        last = self._last
        if last is None:  # the stream's first events: from the first one
            for j in range(lo, hi):
                ev = items[j]
                if ev.__class__ is not _Late:
                    if ev.time > MAX_TIME:
                        return j
                    last = ev.time
                    break
            else:
                return hi
        for j in range(hi - 1, lo - 1, -1):
            ev = items[j]
            if ev.__class__ is not _Late:
                t = ev.time
                if t <= MAX_TIME and (last is None or t - last <= self._max_gap):
                    self._last = t
                    return hi
                break
        else:
            return hi
        for j in range(lo, hi):
            ev = items[j]
            if ev.__class__ is not _Late:
                t = ev.time
                if t > MAX_TIME or (last is not None and t - last > self._max_gap):
                    return j
                last = self._last = t
        return hi

    def _stream_fault(self, items: list, at: int) -> None:
        ev = items[at]
        n = self._events - len(items) + at + 1
        if ev.time > MAX_TIME:
            why = f"time {ev.time} ns is beyond any real eventlog's"
        else:
            why = (f"time jumps {ev.time - self._last} ns (over derive.max_gap, "
                   f"{self._max_gap} ns) from {self._last} ns")
        self.stream_fault = (f"time jump: event {n} of the stream ({_show(ev)}): {why}; "
                             f"the stream's points end before it")
        self._dropped += len(items) - at
        self._events -= len(items) - at  # (counted as dropped, not as derived)
        log.warning("%s%s", self._who(), self.stream_fault)

    def _who(self) -> str:
        tags = self._tags
        return f"session {tags['session']}: " if tags else ""

    def _deriver_fault(self, i: int, exc: Exception, bucket, where: str = "") -> None:
        """Derivers[i] raised: it is replaced by one that takes nothing."""
        d = self.derivers[i]
        name = d.measurement
        if isinstance(exc, DeriveFault) and exc.event is not None:
            where = f"at {_show(exc.event)}"
        elif bucket:
            where = (f"in {len(bucket)} events from {_show(bucket[0])} to {_show(bucket[-1])}")
        cause = exc.cause if isinstance(exc, DeriveFault) else exc
        msg = (f"{name}: {type(cause).__name__}: {str(cause)[:200]} {where} "
               f"(near event {self._events} of the stream); no more {name} points")
        self.deriver_faults[name] = msg
        dead = _Dead(name)
        self.derivers[i] = dead
        for ds in self._wanting.values():
            for k, other in enumerate(ds):
                if other is d:
                    ds[k] = dead
        log.error("%sderiver fault: %s", self._who(), msg)


class _Dead:
    """What a deriver that raised is replaced with: takes nothing, gives nothing."""

    wants: frozenset = frozenset()

    def __init__(self, measurement: str):
        self.measurement = measurement

    def feed_many(self, events, late: bool = False) -> list:
        return []

    def feed(self, ev, late: bool = False) -> list:
        return []

    def flush(self, end: int) -> list:
        return []


def _show(ev) -> str:
    """An event for a message: type, name, time, capability, a short view of the fields."""
    if ev.__class__ is _Late:
        ev = ev[3]
    fields = ", ".join(_short(f) for f in ev.fields[:8])
    return f"{ev.name} (type {ev.type}) at {ev.time} ns, cap {ev.cap}, fields ({fields})"


def _short(value) -> str:
    """Never the whole of an untrusted value (``repr`` of a huge int raises)."""
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if isinstance(value, (list, tuple)):
        return f"<{type(value).__name__} of {len(value)}>"
    return type(value).__name__
