"""``threads``: per window, thread runtime and run count by thread *label*, and
counts of threads created, finished and blocked (by reason).

A run is opened by ``RunThread`` on a capability and closed by the next
``StopThread`` of the same thread on the same capability.  Its time is split
across window boundaries: when a window closes, every run still open is
credited up to the window end and carried on from there, so the runtime of a
window is exactly the time threads ran inside it.  A run that a new
``RunThread`` on the same capability replaces (its stop was never seen) is
closed at that point; runs still open at ``flush(end)`` are closed at ``end``.

Thread ids never become tags: a thread's time goes to its current label
(``ThreadLabel``), or to ``unlabelled``.  Per window only the ``top_n``
labels with the most runtime keep their name; the others are summed into
``other_label``.  Run counts go to the window and label of the ``RunThread``.
"""

from __future__ import annotations

from typing import ClassVar

from protocol import Event
from protocol.eventlog import StopStatus

from .base import DeriveSettings
from .point import Point

CREATE_THREAD, RUN_THREAD, STOP_THREAD, THREAD_LABEL = 0, 1, 2, 44
UNLABELLED = "unlabelled"

# StopThread statuses that mean "blocked", as field names blocked_<reason>
BLOCK_REASONS: dict[int, str] = {
    StopStatus.ThreadBlocked: "blocked_other",
    StopStatus.BlockedOnMVar: "blocked_mvar",
    StopStatus.BlockedOnMVarRead: "blocked_mvar_read",
    StopStatus.BlockedOnBlackHole: "blocked_black_hole",
    StopStatus.BlockedOnRead: "blocked_read",
    StopStatus.BlockedOnWrite: "blocked_write",
    StopStatus.BlockedOnDelay: "blocked_delay",
    StopStatus.BlockedOnSTM: "blocked_stm",
    StopStatus.BlockedOnDoProc: "blocked_do_proc",
    StopStatus.BlockedOnCCall: "blocked_ccall",
    StopStatus.BlockedOnCCall_Interruptible: "blocked_ccall_interruptible",
    StopStatus.BlockedOnMsgThrowTo: "blocked_throw_to",
}
FINISHED = int(StopStatus.ThreadFinished)
N_STATUS = 64  # statuses counted (the RTS uses 0-20)


def top_n_with_other(acc: dict[str, list[int]], n: int, other: str) -> list[tuple[str, list[int]]]:
    """The ``n`` entries with the largest first value (ties by name), the rest
    summed element-wise under ``other`` (merged with a real label of that name)."""
    if len(acc) <= n:
        return sorted(acc.items())
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    kept = dict(ranked[:n])
    rest = [0] * len(ranked[0][1])
    for _, vals in ranked[n:]:
        for i, v in enumerate(vals):
            rest[i] += v
    if other in kept:
        rest = [a + b for a, b in zip(kept[other], rest)]
    kept[other] = rest
    return sorted(kept.items())


class ThreadsDeriver:
    measurement: ClassVar[str] = "threads"
    wants: ClassVar[frozenset[int]] = frozenset({CREATE_THREAD, RUN_THREAD, STOP_THREAD, THREAD_LABEL})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._window = s.window_ns
        self._top_n = s.top_n
        self._other = s.other_label
        self._started = False
        self._ws = self._we = -1  # current window [ws, we); -1 until the first event
        self._labels: dict[int, str] = {}  # thread id -> label (dropped when it finishes)
        self._running: dict[int | None, list] = {}  # cap -> [thread, start of uncredited time]
        self._acc: dict[str, list[int]] = {}  # label -> [runtime_ns, runs] of this window
        self._created = 0  # CreateThread events of this window
        self._stops = [0] * N_STATUS  # StopThread events of this window by status
        self.late = 0  # events older than the current window (folded in at its start)
        self._handlers = {
            CREATE_THREAD: self._create,
            RUN_THREAD: self._run,
            STOP_THREAD: self._stop,
            THREAD_LABEL: self._label,
        }

    # --- feeding ------------------------------------------------------------

    def handlers(self) -> dict:
        """Type id -> ``handler(ev, late)`` returning points or ``None``, for a
        pipeline that dispatches on the type itself."""
        return dict(self._handlers)

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        handler = self._handlers.get(ev.type)
        if handler is None:
            return []
        return handler(ev, late) or []

    def flush(self, end: int) -> list[Point]:
        if not self._started:
            return []
        out = self._advance(end) if end >= self._we else []
        end = max(end, self._ws)
        for run in self._running.values():
            if end > run[1]:
                self._credit(run[0], end - run[1])
        self._running.clear()
        out.extend(self._emit())
        self._started = False
        self._ws = self._we = -1
        return out

    # --- event handlers -----------------------------------------------------
    # Each first closes the windows that end at or before the event, and folds
    # an event older than the current window in at the window's start.

    def _create(self, ev: Event, late: bool) -> list[Point] | None:
        t = ev.time
        out = self._advance(t) if t >= self._we else None
        if t < self._ws:
            self.late += 1
        self._created += 1
        return out

    def _label(self, ev: Event, late: bool) -> list[Point] | None:
        t = ev.time
        out = self._advance(t) if t >= self._we else None
        if t < self._ws:
            self.late += 1
        self._labels[ev.fields[0]] = ev.fields[1]
        return out

    def _run(self, ev: Event, late: bool) -> list[Point] | None:
        t = ev.time
        out = self._advance(t) if t >= self._we else None
        if t < self._ws:
            self.late += 1
            t = self._ws
        thread = ev.fields[0]
        run = self._running.get(ev.cap)
        if run is None:
            self._running[ev.cap] = [thread, t]
        else:  # the previous run on this cap lost its stop: it ends here
            if t > run[1]:
                self._credit(run[0], t - run[1])
            run[0] = thread
            run[1] = t
        label = self._labels.get(thread, UNLABELLED)
        acc = self._acc.get(label)
        if acc is None:
            self._acc[label] = [0, 1]
        else:
            acc[1] += 1
        return out

    def _stop(self, ev: Event, late: bool) -> list[Point] | None:
        t = ev.time
        out = self._advance(t) if t >= self._we else None
        if t < self._ws:
            self.late += 1
            t = self._ws
        fields = ev.fields
        thread = fields[0]
        run = self._running.get(ev.cap)
        if run is not None and run[0] == thread:
            del self._running[ev.cap]
            if t > run[1]:
                label = self._labels.get(thread, UNLABELLED)
                acc = self._acc.get(label)
                if acc is None:
                    self._acc[label] = [t - run[1], 0]
                else:
                    acc[0] += t - run[1]
        status = fields[1]
        if 0 <= status < N_STATUS:
            self._stops[status] += 1
            if status == FINISHED:
                self._labels.pop(thread, None)
        return out

    # --- windows ------------------------------------------------------------

    def _credit(self, thread: int, ns: int) -> None:
        label = self._labels.get(thread, UNLABELLED)
        acc = self._acc.get(label)
        if acc is None:
            self._acc[label] = [ns, 0]
        else:
            acc[0] += ns

    def _advance(self, t: int) -> list[Point]:
        """Close every window that ends at or before ``t`` (the first event
        opens the first window)."""
        out: list[Point] = []
        if not self._started:
            self._started = True
            self._ws = t - t % self._window
            self._we = self._ws + self._window
            return out
        while t >= self._we:
            we = self._we
            for run in self._running.values():
                self._credit(run[0], we - run[1])
                run[1] = we
            out.extend(self._emit())
            if self._running:
                self._ws, self._we = we, we + self._window
            else:  # nothing open: jump straight to the window of t
                self._ws = t - t % self._window
                self._we = self._ws + self._window
        return out

    def _emit(self) -> list[Point]:
        ws = self._ws
        out = [
            Point("threads", {"label": label}, {"runtime_ns": vals[0], "runs": vals[1]}, ws)
            for label, vals in top_n_with_other(self._acc, self._top_n, self._other)
        ]
        stops = self._stops
        if self._created or any(stops):
            blocked = {BLOCK_REASONS[code]: n for code, n in enumerate(stops)
                       if n and code in BLOCK_REASONS}
            fields = {"created": self._created, "finished": stops[FINISHED],
                      "blocked": sum(blocked.values())}
            fields.update(blocked)
            out.append(Point("threads", {}, fields, ws))
            self._created = 0
            self._stops = [0] * N_STATUS
        self._acc = {}
        return out
