"""``spans`` and ``markers``: the user's own instrumentation.

``spans`` follows the ghc-events-analyze convention: a ``UserMessage``
``"START <label>"`` opens a span of ``<label>``, ``"STOP <label>"`` closes the
most recent open span of that label (whatever the thread or capability).  Per
window and label: ``time_ns`` (time inside spans of that label, split across
window boundaries: a window gets the part of each span that lies inside it;
nested spans of one label each count), ``starts`` and ``stops`` (counted in
the window of the message).  A STOP with no open START counts as a stop and
adds no time.  Spans still open at ``flush(end)`` are credited up to ``end``.

``markers``: one point per ``UserMarker`` at its time (field ``text``, for
annotations), and per window the number of user messages and markers.
"""

from __future__ import annotations

from typing import ClassVar

from protocol import Event

from .base import DeriveSettings
from .point import Point

USER_MESSAGE, USER_MARKER = 19, 58


class SpansDeriver:
    measurement: ClassVar[str] = "spans"
    wants: ClassVar[frozenset[int]] = frozenset({USER_MESSAGE})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._window = s.window_ns
        self._ws: int | None = None
        self._we = 0
        self._open: dict[str, list[int]] = {}  # label -> start times, most recent last
        self._acc: dict[str, list[int]] = {}  # label -> [time_ns, starts, stops] of this window
        self.late = 0
        self.unmatched_stops = 0

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        if ev.type != USER_MESSAGE:
            return []
        msg = ev.fields[0]
        if msg.startswith("START "):
            label, start = msg[6:], True
        elif msg.startswith("STOP "):
            label, start = msg[5:], False
        else:
            return []
        t = ev.time
        out: list[Point] = []
        if self._ws is None:
            self._ws = t - t % self._window
            self._we = self._ws + self._window
        elif t >= self._we:
            out = self._advance(t)
        elif t < self._ws:
            self.late += 1
            t = self._ws
        acc = self._acc.get(label)
        if acc is None:
            acc = self._acc[label] = [0, 0, 0]
        if start:
            acc[1] += 1
            stack = self._open.get(label)
            if stack is None:
                self._open[label] = [t]
            else:
                stack.append(t)
        else:
            acc[2] += 1
            stack = self._open.get(label)
            if stack:
                begin = stack.pop()
                if not stack:
                    del self._open[label]
                acc[0] += t - (begin if begin > self._ws else self._ws)
            else:
                self.unmatched_stops += 1
        return out

    def flush(self, end: int) -> list[Point]:
        if self._ws is None:
            return []
        out = self._advance(end) if end >= self._we else []
        self._credit_open(max(end, self._ws))
        self._open.clear()
        out.extend(self._emit())
        self._ws = None
        return out

    def _credit_open(self, upto: int) -> None:
        ws = self._ws
        for label, stack in self._open.items():
            ns = 0
            for begin in stack:
                ns += upto - (begin if begin > ws else ws)
            acc = self._acc.get(label)
            if acc is None:
                self._acc[label] = [ns, 0, 0]
            else:
                acc[0] += ns

    def _advance(self, t: int) -> list[Point]:
        out: list[Point] = []
        while t >= self._we:
            we = self._we
            self._credit_open(we)
            out.extend(self._emit())
            if self._open:
                self._ws, self._we = we, we + self._window
            else:
                self._ws = t - t % self._window
                self._we = self._ws + self._window
        return out

    def _emit(self) -> list[Point]:
        ws = self._ws
        out = [
            Point("spans", {"label": label}, {"time_ns": a[0], "starts": a[1], "stops": a[2]}, ws)
            for label, a in self._acc.items()
        ]
        self._acc = {}
        return out


class MarkersDeriver:
    measurement: ClassVar[str] = "markers"
    wants: ClassVar[frozenset[int]] = frozenset({USER_MESSAGE, USER_MARKER})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._window = s.window_ns
        self._ws: int | None = None
        self._messages = 0
        self._markers = 0
        self.late = 0

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        typ = ev.type
        if typ != USER_MESSAGE and typ != USER_MARKER:
            return []
        t = ev.time
        out: list[Point] = []
        ws = self._ws
        if ws is None:
            self._ws = t - t % self._window
        elif t >= ws + self._window:
            out = self._emit()
            self._ws = t - t % self._window
        elif t < ws:
            self.late += 1
        if typ == USER_MESSAGE:
            self._messages += 1
        else:
            self._markers += 1
            out.append(Point("markers", {}, {"text": ev.fields[0]}, ev.time))
        return out

    def flush(self, end: int) -> list[Point]:
        if self._ws is None:
            return []
        out = self._emit()
        self._ws = None
        return out

    def _emit(self) -> list[Point]:
        out = []
        if self._messages or self._markers:
            out.append(Point("markers", {}, {"messages": self._messages, "markers": self._markers}, self._ws))
        self._messages = self._markers = 0
        return out
