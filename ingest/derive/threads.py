"""``threads``: per window, thread runtime and run count by thread *label*, and
counts of threads created, finished and blocked (by reason).

A run is opened by ``RunThread`` on a capability and closed by the next
``StopThread`` of the same thread on the same capability.  Its time is split
across window boundaries: when a window closes, every run still open is
credited up to the window end and carried on from there, so the runtime of a
window is exactly the time threads ran inside it.  A run that a new
``RunThread`` on the same capability replaces (its stop was never seen) is
closed at that point; runs still open at ``flush(end)`` are closed at ``end``.
Events without a capability (the monitor protocol drops it) key runs by
thread instead: a thread runs on one capability at a time.

Thread ids never become tags: a thread's time goes to its current label
(``ThreadLabel``), or to ``unlabelled``.  Labels are named stably (``Names``):
a label is named the first time it is among the ``top_n`` with the most
runtime in a window, at most ``max_labels`` per session, and keeps its name;
the time of labels without a name is summed into ``other_label``.  Run counts
go to the window and label of the ``RunThread``.  Events too short to carry
what is needed (an ``UnknownEvent`` of a shorter layout) are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocol import Event, EventType
from protocol.eventlog import StopStatus

from . import _native
from .base import Batched, DeriveSettings, Names, Windows
from .point import Point

CREATE_THREAD, RUN_THREAD = int(EventType.CREATE_THREAD), int(EventType.RUN_THREAD)
STOP_THREAD, THREAD_LABEL = int(EventType.STOP_THREAD), int(EventType.THREAD_LABEL)
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
_CORE_TYPES = (CREATE_THREAD, RUN_THREAD, STOP_THREAD)


class ThreadsDeriver(Batched):
    measurement: ClassVar[str] = "threads"
    wants: ClassVar[frozenset[int]] = frozenset({CREATE_THREAD, RUN_THREAD, STOP_THREAD, THREAD_LABEL})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._clock = Windows(s.window_ns)
        self.names = Names(s.top_n, s.max_labels, s.other_label)
        self._labels: dict[int, str] = {}  # thread id -> label (dropped when it finishes)
        # cap -> [thread, start of uncredited time, its label (kept equal to _labels')]
        self._running: dict[int | None, list] = {}
        self._acc: dict[str, list[int]] = {}  # label -> [runtime_ns, runs] of this window
        self._created = 0  # CreateThread events of this window
        self._stops = [0] * N_STATUS  # StopThread events of this window by status
        self.late = 0  # events older than the current window (folded in at its start)

    # --- feeding ------------------------------------------------------------

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The compiled loop (``_core.threads``) where it can, this deriver's
        Python loop for each event it leaves (window ends, labels, ...)."""
        core = _native.core
        if core is None:
            return self._feed_many_py(events, late)
        if events.__class__ is not list and events.__class__ is not tuple:
            events = list(events)
        out: list[Point] = []
        clock, n, i = self._clock, len(events), 0
        while True:
            i, created = core.threads(events, i, clock.start, clock.end, self._labels, self._running,
                                      self._acc, self._stops, UNLABELLED, FINISHED, _CORE_TYPES)
            self._created += created
            if i >= n:
                return out
            out += self._feed_many_py(events[i:i + 1], late)
            i += 1

    def _feed_many_py(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The reference loop.  Each event first closes the windows that end at or before it; one
        older than the current window is folded in at the window's start."""
        out: list[Point] = []
        clock = self._clock
        ws, we = clock.start, clock.end
        labels, running, acc = self._labels, self._running, self._acc
        stops = self._stops
        unlabelled, finished, n_status = UNLABELLED, FINISHED, N_STATUS
        stop_thread, run_thread = STOP_THREAD, RUN_THREAD  # locals: the hot loop compares them
        for ty, _, t, cap, fields in events:
            if t >= we:
                out.extend(clock.advance(t, self._close, running.__len__))
                ws, we = clock.start, clock.end
                acc, stops = self._acc, self._stops
            elif t < ws:
                self.late += 1
                t = ws
            if ty == stop_thread:
                try:
                    thread, status = fields[0], fields[1]
                except IndexError:  # (no zero-cost check is cheaper: it is the hot loop)
                    continue
                if cap is None:  # capability unknown (monitor protocol): key by thread
                    cap = ~thread
                run = running.pop(cap, None)
                if run is not None:
                    if run[0] != thread:
                        running[cap] = run  # not the thread that runs there: ignored
                    elif t > run[1]:
                        a = acc.get(run[2])
                        if a is None:
                            acc[run[2]] = [t - run[1], 0]
                        else:
                            a[0] += t - run[1]
                if 0 <= status < n_status:
                    stops[status] += 1
                    if status == finished and labels.pop(thread, None) is not None:
                        self._relabel(thread, unlabelled)
            elif ty == run_thread:
                try:
                    thread = fields[0]
                except IndexError:
                    continue
                label = labels.get(thread, unlabelled)
                if cap is None:
                    cap = ~thread
                run = running.get(cap)
                if run is None:
                    running[cap] = [thread, t, label]
                else:  # the previous run on this cap lost its stop: it ends here
                    if t > run[1]:
                        self._credit(run[2], t - run[1])
                    run[0] = thread
                    run[1] = t
                    run[2] = label
                a = acc.get(label)
                if a is None:
                    acc[label] = [0, 1]
                else:
                    a[1] += 1
            elif ty == CREATE_THREAD:
                self._created += 1
            elif ty == THREAD_LABEL:
                if len(fields) == 2 and fields[0] is not None:
                    labels[fields[0]] = fields[1]
                    self._relabel(fields[0], fields[1])
        return out

    @property
    def folded(self) -> int:
        return self.names.folded

    def flush(self, end: int) -> list[Point]:
        clock = self._clock
        if not clock.started:
            return []
        out = clock.advance(end, self._close, self._running.__len__) if end >= clock.end else []
        end = max(end, clock.start)
        for run in self._running.values():
            if end > run[1]:
                self._credit(run[2], end - run[1])
        self._running.clear()
        out.extend(self._emit())
        clock.reset()
        return out

    # --- windows ------------------------------------------------------------

    def _relabel(self, thread: int, label: str) -> None:
        """The thread's label changed: so does that of its open run(s)."""
        for run in self._running.values():
            if run[0] == thread:
                run[2] = label

    def _credit(self, label: str, ns: int) -> None:
        acc = self._acc.get(label)
        if acc is None:
            self._acc[label] = [ns, 0]
        else:
            acc[0] += ns

    def _close(self, end: int) -> list[Point]:
        """The window ends at ``end``: credit the open runs up to it."""
        for run in self._running.values():
            self._credit(run[2], end - run[1])
            run[1] = end
        return self._emit()

    def _emit(self) -> list[Point]:
        ws = self._clock.start
        out = [
            Point("threads", {"label": label}, {"runtime_ns": vals[0], "runs": vals[1]}, ws)
            for label, vals in self.names.split(self._acc, ws)
        ]
        stops = self._stops
        if self._created or any(stops):
            blocked = {BLOCK_REASONS[code]: n for code, n in enumerate(stops)
                       if n and code in BLOCK_REASONS}
            fields: dict[str, int | float | str | bool] = {
                "created": self._created, "finished": stops[FINISHED],
                "blocked": sum(blocked.values())}
            fields.update(blocked)
            out.append(Point("threads", {}, fields, ws))
            self._created = 0
            self._stops = [0] * N_STATUS
        self._acc = {}
        return out
