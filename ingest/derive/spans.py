"""``spans`` and ``markers``: the user's own instrumentation.

``spans`` follows the ghc-events-analyze convention: a ``UserMessage``
``"START <label>"`` opens a span of ``<label>``, ``"STOP <label>"`` closes the
most recent open span of that label (whatever the thread or capability).  Per
window and label: ``time_ns`` (time inside spans of that label, split across
window boundaries: a window gets the part of each span that lies inside it;
nested spans of one label each count), ``starts`` and ``stops`` (counted in
the window of the message).  A STOP with no open START counts as a stop and
adds no time.  Spans still open at ``flush(end)`` are credited up to ``end``.
Labels are named stably, as threads' are (``Names``: named the first time
among the ``top_n`` with the most ``time_ns`` in a window, ties by name, at
most ``max_labels`` per session); the others are summed, all three fields,
into ``other_label``.  Closing a window costs one step per label with open
spans, however many spans are open.

``markers``: one point per ``UserMarker`` at its time (field ``text``, for
annotations), and per window the number of user messages and markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocol import Event, EventType

from . import _native
from .base import Batched, DeriveSettings, Names, Windows
from .point import Point

USER_MESSAGE, USER_MARKER = int(EventType.USER_MSG), int(EventType.USER_MARKER)


class SpansDeriver(Batched):
    measurement: ClassVar[str] = "spans"
    wants: ClassVar[frozenset[int]] = frozenset({USER_MESSAGE})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._clock = Windows(s.window_ns)  # opened by the first span message
        self.names = Names(s.top_n, s.max_labels, s.other_label)
        # label -> [time_ns, starts, stops of this window, open start times (most recent last),
        # how many of those began before the window, sum of the others' start times];
        # a label leaves when a window closes with none of its spans open
        self._labels: dict[str, list] = {}
        # whole message -> (state of its label, is START): one lookup per message
        self._kinds: dict[str, tuple[list, bool]] = {}
        self.late = 0
        self.unmatched_stops = 0

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The compiled loop (``_core.spans``) where it can, the Python loop
        for each event it leaves (window ends, new labels, unmatched stops)."""
        core = _native.core
        if core is None:
            return self._feed_many_py(events, late)
        if events.__class__ is not list and events.__class__ is not tuple:
            events = list(events)
        out: list[Point] = []
        clock, n, i = self._clock, len(events), 0
        while True:
            i = core.spans(events, i, clock.start, clock.end, self._kinds)
            if i >= n:
                return out
            out += self._feed_many_py(events[i:i + 1], late)
            i += 1

    def _feed_many_py(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The reference loop."""
        out: list[Point] = []
        clock = self._clock
        ws, we = clock.start, clock.end
        kinds = self._kinds
        for _, _, t, _, (msg,) in events:
            kind = kinds.get(msg)
            if kind is None:
                kind = self._classify(msg)
                if kind is None:
                    continue
            if t >= we:
                out.extend(clock.advance(t, self._close, self._labels.__len__))
                ws, we = clock.start, clock.end
                kinds = self._kinds  # (rebuilt when labels leave)
                again = kinds.get(msg) or self._classify(msg)
                if again is not None:  # (it is: msg is a span message, as just seen)
                    kind = again
            elif t < ws:
                self.late += 1
                t = ws
            st, start = kind
            if start:
                st[1] += 1
                st[3].append(t)
                st[5] += t
            else:
                st[2] += 1
                stack = st[3]
                if stack:
                    begin = stack.pop()
                    if len(stack) >= st[4]:  # it began in this window
                        st[5] -= begin
                    else:
                        st[4] -= 1
                    if t > begin:  # (a late STOP may be older than its START)
                        st[0] += t - (begin if begin > ws else ws)
                else:
                    self.unmatched_stops += 1
        return out

    def _classify(self, msg: str) -> tuple[list, bool] | None:
        if msg.startswith("START "):
            label, start = msg[6:], True
        elif msg.startswith("STOP "):
            label, start = msg[5:], False
        else:
            return None
        st = self._labels.get(label)
        if st is None:
            st = self._labels[label] = [0, 0, 0, [], 0, 0]
        kind = self._kinds[msg] = (st, start)
        return kind

    @property
    def folded(self) -> int:
        return self.names.folded

    def flush(self, end: int) -> list[Point]:
        clock = self._clock
        if not clock.started:
            return []
        out = clock.advance(end, self._close, self._labels.__len__) if end >= clock.end else []
        self._credit_open(max(end, clock.start))
        for st in self._labels.values():
            st[3].clear()
            st[4] = st[5] = 0
        out.extend(self._emit())
        clock.reset()
        return out

    def _credit_open(self, upto: int) -> None:
        """Credit the open spans up to ``upto``; from then on all of them began
        before the (next) window."""
        ws = self._clock.start
        for st in self._labels.values():
            stack = st[3]
            if stack:
                carried = st[4]
                st[0] += carried * (upto - ws) + (len(stack) - carried) * upto - st[5]
                st[4] = len(stack)
                st[5] = 0

    def _close(self, end: int) -> list[Point]:
        self._credit_open(end)
        return self._emit()

    def _emit(self) -> list[Point]:
        ws = self._clock.start
        acc = {}
        idle = []
        for label, st in self._labels.items():
            if st[0] or st[1] or st[2]:
                acc[label] = st[:3]
                st[0] = st[1] = st[2] = 0
            if not st[3]:
                idle.append(label)
        for label in idle:
            del self._labels[label]
        if idle:
            labels = self._labels
            self._kinds = {m: k for m, k in self._kinds.items()
                           if k[0] is labels.get(m[6:] if k[1] else m[5:])}
        return [Point("spans", {"label": label}, {"time_ns": v[0], "starts": v[1], "stops": v[2]}, ws)
                for label, v in self.names.split(acc, ws)]


class MarkersDeriver(Batched):
    measurement: ClassVar[str] = "markers"
    wants: ClassVar[frozenset[int]] = frozenset({USER_MESSAGE, USER_MARKER})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._clock = Windows(s.window_ns)
        self._messages = 0
        self._markers = 0
        self.late = 0

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The compiled count of messages (``_core.markers``) where it can,
        the Python loop for markers and window ends."""
        core = _native.core
        if core is None:
            return self._feed_many_py(events, late)
        if events.__class__ is not list and events.__class__ is not tuple:
            events = list(events)
        out: list[Point] = []
        clock, n, i = self._clock, len(events), 0
        while True:
            i, messages = core.markers(events, i, clock.start, clock.end, USER_MESSAGE)
            self._messages += messages
            if i >= n:
                return out
            out += self._feed_many_py(events[i:i + 1], late)
            i += 1

    def _feed_many_py(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The reference loop."""
        out: list[Point] = []
        clock = self._clock
        ws, we = clock.start, clock.end
        messages = 0  # of the current window, not yet added to self._messages
        for ev in events:
            t = ev[2]
            if t >= we:
                self._messages += messages
                messages = 0
                out.extend(clock.advance(t, self._close))
                ws, we = clock.start, clock.end
            elif t < ws:
                self.late += 1
            if ev[0] == USER_MESSAGE:
                messages += 1
            else:
                self._markers += 1
                out.append(Point("markers", {}, {"text": ev[4][0]}, t))
        self._messages += messages
        return out

    def flush(self, end: int) -> list[Point]:
        if not self._clock.started:
            return []
        out = self._close(end)
        self._clock.reset()
        return out

    def _close(self, end: int) -> list[Point]:
        out = []
        if self._messages or self._markers:
            out.append(Point("markers", {}, {"messages": self._messages, "markers": self._markers},
                             self._clock.start))
        self._messages = self._markers = 0
        return out
