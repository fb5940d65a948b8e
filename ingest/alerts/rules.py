"""The GC-pause alert rules: points in, ``Alert`` values out (docs/alerts.md).

A plain transform in the manner of a deriver: synchronous, no I/O, no clock
(time is the points' own ``time``), state only per open window.  Whoever
carries the alerts (``ingest.sinks.mqtt``) calls ``feed`` with each batch of
points and ``end`` at shutdown; the same points in any batching give the same
alerts in the same order.

Two rules, over the ``gc`` points (one per collection, docs/schema.md):

- ``gc_pause``: a collection whose ``pause_ns`` is **strictly over**
  ``pause_threshold_ns`` makes one alert at once.  A live correction writes
  points again (docs/live.md, "Late events"; such a point has
  ``meta["rewrite"]``): a collection already alerted on (its session and
  time, among the last ``MAX_ALERTED``) is not alerted on again.
- ``gc_pause_share`` (when ``share_threshold`` is set): per session (app,
  host, session tags), the pauses of the collections *starting* in each
  window of ``window_ns`` (aligned on multiples of it) are summed; a window
  whose sum is over ``share_threshold * window_ns`` makes one alert when it is
  judged: when the session's first collection of a later window comes, when
  the session's other points are a whole window past its end (a ``gc`` point
  may come after the points of its time: it waits for the collection's
  statistics), or at ``end()``.  A collection older than a window already
  judged is not counted (``share_late``); points written again by a correction
  are not counted twice (they are left out).  At most ``max_sessions`` sessions
  keep a window; past it the least recently seen one is forgotten.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ingest.alerts.alert import (
    ALERT_GC_PAUSE,
    ALERT_GC_PAUSE_SHARE,
    Alert,
    Window,
    gc_pause_alert,
    pause_share_alert,
)

if TYPE_CHECKING:
    from ingest.derive.point import Point

__all__ = ["MAX_ALERTED", "MAX_SHARE_SESSIONS", "GcPauseRules"]

MAX_SHARE_SESSIONS = 10_000  # sessions with an open pause-share window (oldest forgotten)
MAX_ALERTED = 10_000  # collections alerted on, remembered (a correction writes points again)

_Key = tuple[str, str, str]  # app, host, session


class GcPauseRules:
    """``feed(points) -> alerts``; ``end() -> alerts`` judges the open windows.

    Counters: ``gc_points`` (gc points looked at), ``share_late`` (collections
    older than their session's last judged window)."""

    def __init__(self, *, pause_threshold_ns: int, share_threshold: float | None = None,
                 window_ns: int = 10_000_000_000,
                 max_sessions: int = MAX_SHARE_SESSIONS) -> None:
        if window_ns < 1 or max_sessions < 1:
            raise ValueError("window_ns and max_sessions must be at least 1")
        if share_threshold is not None and share_threshold <= 0:
            raise ValueError("share_threshold must be over 0")
        self.pause_threshold_ns = pause_threshold_ns
        self.share_threshold = share_threshold
        self.window_ns = window_ns
        self.max_sessions = max_sessions
        self.gc_points = 0
        self.share_late = 0
        self._windows: collections.OrderedDict[_Key, Window] = collections.OrderedDict()
        self._alerted: dict[tuple[_Key, int], None] = {}  # the last MAX_ALERTED, in order

    @property
    def open_windows(self) -> int:
        """Sessions whose current window is not judged yet."""
        return sum(w.open for w in self._windows.values())

    def feed(self, points: Iterable[Point]) -> list[Alert]:
        """The alerts these points make, in the order they are made."""
        out: list[Alert] = []
        share = self.share_threshold
        threshold = self.pause_threshold_ns
        windows = self._windows
        seen = 0
        for p in points:
            if p.measurement != "gc":
                if share is not None and windows:
                    self._maybe_close_window(p, out)
                continue
            seen += 1
            pause = p.fields.get("pause_ns", 0)
            if isinstance(pause, str) or pause is None:  # not from our deriver: no pause known
                pause = 0
            rewrite = p.meta.get("rewrite", False) if p.meta else False
            if pause > threshold:
                key = (self._key(p), p.time)
                if key not in self._alerted:
                    self._alerted[key] = None
                    if len(self._alerted) > MAX_ALERTED:
                        del self._alerted[next(iter(self._alerted))]
                    out.append(_alert(ALERT_GC_PAUSE, p.tags, p.time,
                                      gc_pause_alert(p, threshold)))
            if share is not None and not rewrite:
                self._add_to_window(p, pause, out)
        self.gc_points += seen
        return out

    def end(self) -> list[Alert]:
        """Judge every open pause-share window now (at shutdown)."""
        out: list[Alert] = []
        for w in self._windows.values():
            if w.open:
                self._judge(w, out)
        return out

    # -- windows -----------------------------------------------------------------------

    @staticmethod
    def _key(p: Point) -> _Key:
        t = p.tags
        return t.get("app", ""), t.get("host", ""), t.get("session", "")

    def _add_to_window(self, p: Point, pause: float, out: list[Alert]) -> None:
        key = self._key(p)
        start = p.time - p.time % self.window_ns
        windows = self._windows
        w = windows.get(key)
        if w is None:
            w = windows[key] = Window(start, tags=dict(p.tags))
            if len(windows) > self.max_sessions:
                windows.popitem(last=False)
        else:
            windows.move_to_end(key)
            if start > w.start_ns:  # a later window: the open one is complete
                if w.open:
                    self._judge(w, out)
                w.start_ns, w.pause_ns, w.collections, w.max_pause_ns = start, 0, 0, 0
                w.open, w.tags = True, dict(p.tags)
            elif not w.open:  # older than a window already judged
                self.share_late += 1
                return
            # (older than the open window, but after the last judged one:
            # counted in the open window)
        w.pause_ns += pause
        w.collections += 1
        w.max_pause_ns = max(w.max_pause_ns, pause)

    def _maybe_close_window(self, p: Point, out: list[Alert]) -> None:
        """Judge a session's open window once its other points are a whole
        window past its end."""
        w = self._windows.get(self._key(p))
        if w is not None and w.open and p.time >= w.start_ns + 2 * self.window_ns:
            self._judge(w, out)

    def _judge(self, w: Window, out: list[Alert]) -> None:
        w.open = False
        threshold = self.share_threshold
        if threshold is not None and w.pause_ns > threshold * self.window_ns:
            out.append(_alert(ALERT_GC_PAUSE_SHARE, w.tags, w.start_ns,
                              pause_share_alert(w, self.window_ns, threshold)))


def _alert(kind: str, tags: dict[str, str], time_ns: int, payload: dict) -> Alert:
    return Alert(kind, tags.get("app", ""), tags.get("host", ""), tags.get("session", ""),
                 time_ns, payload)
