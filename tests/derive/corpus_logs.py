"""Corpus access shared by the tests of the threads/spans/sparks/heap-profile/
non-moving derivers: decode a log once, hand out its events in time order
(stable sort by time, the order the pipeline gives) and its summary."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from protocol import Decoder, Event

CORPUS = Path(os.environ.get("LIVEPROF_CORPUS")
              or Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()


def logs_with_summary() -> list[str]:
    """Names ("eventlogs/NAME") of every corpus log that has a summary."""
    names = []
    for sub in ("eventlogs", "ghc-events-testdata"):
        for p in sorted((CORPUS / sub).glob("*.summary.json")):
            names.append(f"{sub}/{p.name[: -len('.summary.json')]}")
    return names


@functools.lru_cache(maxsize=None)
def summary(name: str) -> dict:
    return json.loads((CORPUS / f"{name}.summary.json").read_text())


@functools.lru_cache(maxsize=None)
def _events(name: str, wants: frozenset[int]) -> tuple[Event, ...]:
    dec = Decoder(only=wants)
    events = dec.feed((CORPUS / f"{name}.eventlog").read_bytes())
    dec.close()
    return tuple(sorted(events, key=lambda e: e.time))


def events(name: str, wants) -> tuple[Event, ...]:
    return _events(name, frozenset(wants))


def run(deriver, evs) -> list:
    """Feed time-ordered events to a deriver, then flush at the last time."""
    out = []
    for ev in evs:
        out.extend(deriver.feed(ev))
    out.extend(deriver.flush(evs[-1].time if evs else 0))
    return out


@functools.lru_cache(maxsize=None)
def _file_order(name: str, wants: frozenset[int]) -> tuple[Event, ...]:
    dec = Decoder(only=wants)
    events = dec.feed((CORPUS / f"{name}.eventlog").read_bytes())
    dec.close()
    return tuple(events)


def file_order_events(name: str, wants) -> tuple[Event, ...]:
    """Events in file order (per-cap blocks: not time order), to feed as late."""
    return _file_order(name, frozenset(wants))


def run_unordered(deriver, evs) -> list:
    """Feed events as a live merge that gave up on order would: an event older
    than the newest seen is passed with ``late=True``."""
    out = []
    newest = None
    for ev in evs:
        late = newest is not None and ev.time < newest
        if not late:
            newest = ev.time
        out.extend(deriver.feed(ev, late=late))
    out.extend(deriver.flush(newest if newest is not None else 0))
    return out
