"""``heap_profile``: per heap-profile census, the residency of each label.

A census starts with ``HeapProfSampleBegin`` (or ``HeapBioProfSampleBegin``)
and ends with ``HeapProfSampleEnd``, the next census begin, a new
``HeapProfBegin`` or the end of the stream (GHC 8.2-8.4 write no
``HeapProfSampleEnd``).  Its samples are ``HeapProfSampleString`` (closure
type, description, type, module, retainer set, biography: the label as
written) and ``HeapProfSampleCostCentre`` (a cost-centre stack, rendered from
the ``HeapProfCostCentre`` definitions as labels joined by ``/``, outermost
first, e.g. ``main/foo/bar``; the RTS leaves out the root ``MAIN``, so an empty
stack is ``MAIN``; a CAF cost centre shows as ``Module.CAF`` and an undefined
id as ``cc<id>``).  Samples
of one label within a census are summed.

One point per label per census, at the census begin time (for biographical
censuses, the ``sample_time`` the RTS records, as their events are all written
at the end of the run).  Tag ``mode`` is the breakdown of the profile
(``HeapProfBegin``); the samples of every profile of one mode in a census are
summed per label (they are one series).  Labels are named stably, as
threads' are (``Names``: named the first time among a census's ``top_n`` by
residency, at most ``max_labels`` per session, all modes together); the rest
of each mode is summed into its ``other_label``.  A breakdown this code does
not know is mode ``breakdown_<n>`` (``unknown`` from ``MAX_BREAKDOWN`` on: a
crafted log makes no more modes).  An empty census gives no point.
"""

from __future__ import annotations

from typing import ClassVar

from protocol import Event, EventType
from protocol.eventlog import HeapProfBreakdown

from .base import ByType, DeriveSettings, Names
from .point import Point

HEAP_PROF_BEGIN, COST_CENTRE, SAMPLE_BEGIN, SAMPLE_CC, SAMPLE_STRING, SAMPLE_END, BIO_BEGIN = map(int, (
    EventType.HEAP_PROF_BEGIN, EventType.HEAP_PROF_COST_CENTRE, EventType.HEAP_PROF_SAMPLE_BEGIN,
    EventType.HEAP_PROF_SAMPLE_COST_CENTRE, EventType.HEAP_PROF_SAMPLE_STRING,
    EventType.HEAP_PROF_SAMPLE_END, EventType.HEAP_BIO_PROF_SAMPLE_BEGIN))

MODES = {
    HeapProfBreakdown.HeapProfBreakdownCostCentre: "cost_centre",
    HeapProfBreakdown.HeapProfBreakdownModule: "module",
    HeapProfBreakdown.HeapProfBreakdownClosureDescr: "closure_descr",
    HeapProfBreakdown.HeapProfBreakdownTypeDescr: "type_descr",
    HeapProfBreakdown.HeapProfBreakdownRetainer: "retainer",
    HeapProfBreakdown.HeapProfBreakdownBiography: "biography",
    HeapProfBreakdown.HeapProfBreakdownClosureType: "closure_type",
    HeapProfBreakdown.HeapProfBreakdownInfoTable: "info_table",
    HeapProfBreakdown.HeapProfBreakdownEra: "era",
}
UNKNOWN_MODE = "unknown"
MAX_BREAKDOWN = 32  # breakdowns beyond the known ones named breakdown_<n> below this (GHC has 9)
EMPTY_LABEL = "(empty)"
ROOT_STACK = "MAIN"  # the RTS writes stacks without their MAIN root: an empty one is MAIN


class HeapProfileDeriver(ByType):
    measurement: ClassVar[str] = "heap_profile"
    wants: ClassVar[frozenset[int]] = frozenset(
        {HEAP_PROF_BEGIN, COST_CENTRE, SAMPLE_BEGIN, SAMPLE_CC, SAMPLE_STRING, SAMPLE_END, BIO_BEGIN})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._settings = s
        self._names: dict[str, Names] = {}  # mode -> its stable label names
        self._tally = [0]  # names given, all modes: one bound for the measurement
        self._modes: dict[int, str] = {}  # heap profile id -> breakdown mode
        self._cc_names: dict[int, str] = {}  # cost centre id -> label
        self._stacks: dict[tuple, str] = {}  # rendered cost-centre stacks
        self._time: int | None = None  # time of the open census, None when none is open
        self._acc: dict[tuple[int, str], int] = {}  # (profile id, label) -> bytes
        self.censuses = 0  # censuses closed, empty ones included
        self.orphan_samples = 0  # samples outside any census
        self._handlers = {
            HEAP_PROF_BEGIN: self._begin_profile,
            COST_CENTRE: self._cost_centre,
            SAMPLE_BEGIN: self._begin,
            BIO_BEGIN: self._begin,
            SAMPLE_CC: self._sample_cc,
            SAMPLE_STRING: self._sample_string,
            SAMPLE_END: self._end,
        }

    @property
    def folded(self) -> int:
        return sum(n.folded for n in self._names.values())

    def flush(self, end: int) -> list[Point]:
        return self._close()

    # --- handlers -----------------------------------------------------------

    def _begin_profile(self, ev: Event, late: bool = False) -> list[Point]:
        out = self._close()
        f = ev.fields
        if len(f) > 2 and f[0] is not None:
            breakdown = f[2]
            mode = MODES.get(breakdown) if breakdown is not None else UNKNOWN_MODE
            if mode is None:  # a newer RTS's; a tag value, so only a few of them
                mode = f"breakdown_{int(breakdown)}" if 0 <= breakdown < MAX_BREAKDOWN else UNKNOWN_MODE
            self._modes[f[0]] = mode
        return out

    def _cost_centre(self, ev: Event, late: bool = False) -> list[Point]:
        if len(ev.fields) < 5:
            return []
        cc, label, module, _srcloc, flags = ev.fields[:5]
        if cc is None or label is None:  # (cut short: its stacks show it as cc<id>)
            return []
        # a CAF cost centre is per module: "GHC.Conc.Signal.CAF", as the RTS prints it
        self._cc_names[cc] = f"{module}.{label}" if flags and flags & 1 and module else label
        return []

    def _begin(self, ev: Event, late: bool = False) -> list[Point]:
        out = self._close()
        # HeapBioProfSampleBegin: (era, sample_time); HeapProfSampleBegin: (era,)
        f = ev.fields
        # (written at the end of the run, after their sample time: a later one is corrupt)
        self._time = f[1] if ev.type == BIO_BEGIN and len(f) > 1 and f[1] <= ev.time else ev.time
        return out

    def _end(self, ev: Event, late: bool = False) -> list[Point]:
        return self._close()

    def _sample_string(self, ev: Event, late: bool = False) -> list[Point]:
        if self._time is None:
            self.orphan_samples += 1
            return []
        f = ev.fields
        if len(f) < 3 or f[0] is None or f[1] is None:  # (cut short)
            return []
        key = (f[0], f[2] or EMPTY_LABEL)
        self._acc[key] = self._acc.get(key, 0) + f[1]
        return []

    def _sample_cc(self, ev: Event, late: bool = False) -> list[Point]:
        if self._time is None:
            self.orphan_samples += 1
            return []
        f = ev.fields
        if len(f) < 4 or f[0] is None or f[1] is None:  # (cut short)
            return []
        stack = tuple(f[3] or ())
        label = self._stacks.get(stack)
        if label is None:
            label = self._render(stack)
        key = (f[0], label)
        self._acc[key] = self._acc.get(key, 0) + f[1]
        return []

    def _render(self, stack: tuple) -> str:
        names = self._cc_names
        parts = [names.get(cc) for cc in reversed(stack)]
        known = [p for p in parts if p is not None]
        if len(known) == len(parts):  # every cost centre named: the label is final
            label = "/".join(known) or ROOT_STACK
            self._stacks[stack] = label
            return label
        return "/".join(p if p is not None else f"cc{cc}" for p, cc in zip(parts, reversed(stack)))

    # --- census -------------------------------------------------------------

    def _close(self) -> list[Point]:
        t = self._time
        if t is None:
            return []
        self._time = None
        self.censuses += 1
        acc, self._acc = self._acc, {}
        if not acc:
            return []
        # by mode: a series is (mode, label), so profiles of one mode share it
        per_mode: dict[str, dict[str, list[int]]] = {}
        modes = self._modes
        for (pid, label), size in acc.items():
            sizes = per_mode.setdefault(modes.get(pid, UNKNOWN_MODE), {})
            had = sizes.get(label)
            if had is None:
                sizes[label] = [size]
            else:
                had[0] += size
        out = []
        for mode, sizes in per_mode.items():
            names = self._names.get(mode)
            if names is None:
                s = self._settings
                names = self._names[mode] = Names(s.top_n, s.max_labels, s.other_label,
                                                  self._tally)
            for label, (size,) in names.split(sizes, t):
                out.append(Point("heap_profile", {"mode": mode, "label": label},
                                 {"residency_bytes": size}, t))
        return out
