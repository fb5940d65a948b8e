"""What every deriver is: a plain object, fed time-ordered events of one
session, returning points.  Derivers do no I/O and hold only per-window and
per-open-interval state.

Contract:
- ``feed(ev)`` is called with events in (eventlog) time order, except "late"
  events that a live merge could not place in order (``late=True``); a deriver
  must not fail on those (count them, or fold them in as it can).
- ``feed_many(events, late)`` is the same for a run of events (all late or all
  not), with the same result as feeding them one by one; the pipeline calls
  it once per deriver per slice of released events, with just the events the
  deriver wants (a deriver must not keep the list itself, it is reused).
  ``Batched`` gives ``feed`` to a deriver written as ``feed_many``; ``ByType``
  gives both to one written as a handler per event type.
- Returned points carry eventlog time (ns since RTS start) and only the
  deriver's own tags; the pipeline adds ``app``/``host``/``session`` and turns
  the time into Unix time.
- ``flush(end)`` closes open windows at the end of the stream (``end`` is the
  last event time seen) and returns the remaining points.
- ``wants`` lists the event type ids the deriver needs, so that the decoder
  can skip the rest.
- Whatever the decoder returns must be safe: an event of an older or shorter
  layout (fewer fields, ``None`` for a field it could not read, ``()`` for an
  ``UnknownEvent``) is skipped or taken for what it has, never an error.  If a
  deriver raises all the same, the pipeline ends that deriver's points alone
  and logs which event it was (``DeriveFault``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from protocol import Event

from .point import Point

SECOND = 1_000_000_000
DAY = 86_400 * SECOND
# a gap of more than this many windows with nothing in them is written as this
# many windows, one by one, then the rest of the gap as one point (see Windows)
GAP_WINDOWS = 10


@dataclass(frozen=True)
class DeriveSettings:
    window_ns: int = SECOND  # aggregation window of the per-window measurements
    top_n: int = 10  # labels kept by name per window (threads, spans) or census (heap_profile)
    other_label: str = "other"
    # False for streams whose events carry no capability (the monitor protocol drops
    # it): the per-capability measurements (capability, sparks, heap allocation)
    # cannot be computed and are left out rather than made up
    caps_known: bool = True
    # a time jump (between events in time order) longer than this is a stream fault:
    # the stream's points end there (docs/schema.md); no real program goes a day silent
    # between two events of its eventlog, a corrupt timestamp does
    max_gap_ns: int = DAY
    # labels named per session and measurement (threads, spans, heap_profile: all modes):
    # once named a label keeps its name; labels beyond the bound go to other_label
    max_labels: int = 100


class DeriveFault(Exception):
    """A deriver could not take an event (a bug: derivers take whatever the
    decoder returns); ``event`` is that event when known."""

    def __init__(self, event, cause: BaseException):
        super().__init__(f"{type(cause).__name__}: {str(cause)[:200]}")
        self.event = event
        self.cause = cause


class Deriver(Protocol):
    measurement: ClassVar[str]
    wants: ClassVar[frozenset[int]]

    def feed(self, ev: Event, late: bool = False) -> list[Point]: ...

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]: ...

    def flush(self, end: int) -> list[Point]: ...


class Names:
    """Stable label names of one measurement in one session (issue 14, item 3).

    A label is named the first time it is among the ``top_n`` of a window (or
    census; ranked by the first value, largest first, ties by name), while
    fewer than ``max_labels`` are named; once named it keeps its name in every
    later window.  Labels without a name are summed (element-wise) under
    ``other``, merged with a real label of that name.  So names never flicker,
    a label's series sums to its total from the window it was named in, at
    most ``max_labels`` + 1 series are made, and the naming depends only on
    the windows' contents in time order, never on how the stream was cut into
    pieces.  ``folded``: entries summed into ``other`` (one per label and
    window).  ``tally``: the count of names given, a one-element list that
    several ``Names`` may share, so that they have one bound between them
    (heap_profile's modes: each its own series and ``other``); by default
    their own."""

    __slots__ = ("named", "top_n", "max_labels", "other", "folded", "tally")

    def __init__(self, top_n: int, max_labels: int, other: str, tally: list[int] | None = None):
        self.named: dict[str, int] = {}  # label -> start of the window it was named in
        self.top_n = top_n
        self.max_labels = max_labels
        self.other = other
        self.folded = 0
        self.tally = [0] if tally is None else tally

    def split(self, acc: dict[str, list[int]], at: int = 0) -> list[tuple[str, list[int]]]:
        """The window's entries by name, sorted (``acc`` is consumed); ``at``:
        the window's start (census time), kept with each name it gives."""
        named, other = self.named, self.other
        new = [label for label in acc if label not in named and label != other]
        if not new:
            return sorted(acc.items())
        room = self.max_labels - self.tally[0]
        if room > 0:
            if len(acc) > self.top_n:
                ranked = sorted(acc, key=lambda label: (-acc[label][0], label))
                top = {label for label in ranked[:self.top_n] if label not in named
                       and label != other}
            else:
                top = set(new)
            if top:
                if len(top) > room:
                    top = set(sorted(top, key=lambda label: (-acc[label][0], label))[:room])
                for label in top:
                    named[label] = at
                self.tally[0] += len(top)
                new = [label for label in new if label not in top]
        if new:
            self.folded += len(new)
            self._fold(acc, new)
        return sorted(acc.items())

    def resplit(self, acc: dict[str, list[int]], at: int) -> list[tuple[str, list[int]]]:
        """The window at ``at``, split before, again with its corrected whole
        content (late events; ``acc`` is consumed): the labels named at or
        before ``at`` keep their names, every other is summed into ``other``,
        and no name is given (a name given now would be missing from the later
        windows already written).  So the correction carries the names the
        window had, the ones an import of the same bytes gives unless the late
        events changed which labels top the window."""
        named, other = self.named, self.other
        new = [label for label in acc if label != other and named.get(label, at + 1) > at]
        if new:
            self._fold(acc, new)
        return sorted(acc.items())

    def _fold(self, acc: dict[str, list[int]], labels: list[str]) -> None:
        """Sum ``labels``' entries, field by field, into ``other``'s."""
        other = self.other
        rest = [0] * len(acc[labels[0]])
        for label in labels:
            for i, v in enumerate(acc.pop(label)):
                rest[i] += v
        mine = acc.get(other)
        acc[other] = [a + b for a, b in zip(mine, rest)] if mine else rest


def window_start(t: int, window_ns: int) -> int:
    return t - t % window_ns


class Batched:
    """``feed`` for a deriver whose work is in ``feed_many``."""

    wants: ClassVar[frozenset[int]]

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        return self.feed_many((ev,), late) if ev.type in self.wants else []

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        raise NotImplementedError


class ByType:
    """``feed``/``feed_many`` for a deriver whose events are few: one handler
    per event type, ``self._handlers[type](ev, late)`` returning points or
    nothing."""

    _handlers: dict

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        h = self._handlers.get(ev.type)
        return list(h(ev, late) or ()) if h is not None else []

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        handlers = self._handlers
        out: list[Point] = []
        try:
            for ev in events:
                h = handlers.get(ev[0])
                if h is not None:
                    got = h(ev, late)
                    if got:
                        out.extend(got)
        except Exception as exc:  # (a bug; the pipeline names the event)
            raise DeriveFault(ev, exc) from exc
        return out


class Windows:
    """The window clock of a per-window deriver: the current window is
    ``[start, end)``, aligned on multiples of ``size``; ``end`` is -1 until
    the first event opens the first window (so ``t >= end`` is the one test a
    deriver makes per event before calling ``advance``)."""

    __slots__ = ("size", "start", "end")

    def __init__(self, size: int):
        self.size = size
        self.start = self.end = -1

    @property
    def started(self) -> bool:
        return self.end != -1

    def reset(self) -> None:
        self.start = self.end = -1

    def open_at(self, t: int) -> None:
        self.start = window_start(t, self.size)
        self.end = self.start + self.size

    def advance(self, t: int, close: Callable[[int], list[Point]],
                carry: Callable[[], object] | None = None) -> list[Point]:
        """Close every window that ends at or before ``t``: ``close(end)``
        credits what is open up to the window end and returns the window's
        points.  If ``carry()`` is true (something is still open; e.g. a
        ``__len__``) the next window follows the closed one, else the clock
        jumps to ``t``'s window.  The first call only opens ``t``'s window.

        A gap costs at most ``GAP_WINDOWS + 2`` closes, however long: after
        ``GAP_WINDOWS`` empty windows carried one by one (a pause of the
        program shows as it is), the rest of the gap up to ``t``'s window is
        closed as one window (its point, at its start, covers it whole)."""
        if self.end == -1:
            self.open_at(t)
            return []
        out: list[Point] = []
        empty = 0
        while t >= self.end:
            end = self.end
            out.extend(close(end))
            if carry is None or not carry():
                self.open_at(t)
            elif empty == GAP_WINDOWS and t >= end + self.size:
                stop = window_start(t, self.size)
                self.start, self.end = end, stop
                out.extend(close(stop))
                self.start, self.end = stop, stop + self.size
            else:
                empty += 1
                self.start, self.end = end, end + self.size
        return out
