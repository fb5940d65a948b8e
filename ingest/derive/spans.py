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
        self._started = False
        self._ws = self._we = -1  # current window [ws, we); -1 until the first span message
        # label -> [time_ns, starts, stops of this window, open start times (most recent last)];
        # a label leaves when a window closes with none of its spans open
        self._labels: dict[str, list] = {}
        # whole message -> (state of its label, is START): one lookup per message
        self._kinds: dict[str, tuple[list, bool]] = {}
        self.late = 0
        self.unmatched_stops = 0

    def handlers(self) -> dict:
        return {USER_MESSAGE: self._message}

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        if ev.type != USER_MESSAGE:
            return []
        return self._message(ev, late) or []

    def _message(self, ev: Event, late: bool) -> list[Point] | None:
        kind = self._kinds.get(ev.fields[0])
        if kind is None:
            kind = self._classify(ev.fields[0])
            if kind is None:
                return None
        t = ev.time
        out = None
        if t >= self._we:
            out = self._advance(t)
            kind = self._kinds.get(ev.fields[0]) or self._classify(ev.fields[0])
        if t < self._ws:
            self.late += 1
            t = self._ws
        st, start = kind
        if start:
            st[1] += 1
            st[3].append(t)
        else:
            st[2] += 1
            stack = st[3]
            if stack:
                begin = stack.pop()
                if t > begin:  # (a late STOP may be older than its START)
                    ws = self._ws
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
            st = self._labels[label] = [0, 0, 0, []]
        kind = self._kinds[msg] = (st, start)
        return kind

    def flush(self, end: int) -> list[Point]:
        if not self._started:
            return []
        out = self._advance(end) if end >= self._we else []
        self._credit_open(max(end, self._ws))
        for st in self._labels.values():
            st[3].clear()
        out.extend(self._emit())
        self._started = False
        self._ws = self._we = -1
        return out

    def _credit_open(self, upto: int) -> None:
        ws = self._ws
        for st in self._labels.values():
            stack = st[3]
            if stack:
                ns = 0
                for begin in stack:
                    ns += upto - (begin if begin > ws else ws)
                st[0] += ns

    def _advance(self, t: int) -> list[Point]:
        out: list[Point] = []
        if not self._started:
            self._started = True
            self._ws = t - t % self._window
            self._we = self._ws + self._window
            return out
        while t >= self._we:
            we = self._we
            self._credit_open(we)
            out.extend(self._emit())
            if self._labels:  # some spans are open
                self._ws, self._we = we, we + self._window
            else:
                self._ws = t - t % self._window
                self._we = self._ws + self._window
        return out

    def _emit(self) -> list[Point]:
        ws = self._ws
        out = []
        idle = []
        for label, st in self._labels.items():
            if st[0] or st[1] or st[2]:
                out.append(Point("spans", {"label": label},
                                 {"time_ns": st[0], "starts": st[1], "stops": st[2]}, ws))
                st[0] = st[1] = st[2] = 0
            if not st[3]:
                idle.append(label)
        for label in idle:
            del self._labels[label]
        if idle:
            labels = self._labels
            self._kinds = {m: k for m, k in self._kinds.items() if k[0] is labels.get(m[6:] if k[1] else m[5:])}
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

    def handlers(self) -> dict:
        return {USER_MESSAGE: self._message, USER_MARKER: self._marker}

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        if ev.type == USER_MESSAGE:
            return self._message(ev, late) or []
        if ev.type == USER_MARKER:
            return self._marker(ev, late)
        return []

    def _window_of(self, t: int) -> list[Point] | None:
        ws = self._ws
        if ws is None:
            self._ws = t - t % self._window
        elif t >= ws + self._window:
            out = self._emit()
            self._ws = t - t % self._window
            return out
        elif t < ws:
            self.late += 1
        return None

    def _message(self, ev: Event, late: bool) -> list[Point] | None:
        t = ev.time
        ws = self._ws
        if ws is not None and ws <= t < ws + self._window:
            self._messages += 1
            return None
        out = self._window_of(t)
        self._messages += 1
        return out

    def _marker(self, ev: Event, late: bool) -> list[Point]:
        out = self._window_of(ev.time) or []
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
