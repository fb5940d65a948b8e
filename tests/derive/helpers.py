"""Running logs through the derivers and the pipeline, for the derive tests
(the logs themselves come from tests/corpus.py): a log's events decoded once
and handed out in time order (a stable sort by time, the order the pipeline
gives) or file order, and a pipeline fed in any chunking."""

from __future__ import annotations

import functools
import random
from pathlib import Path

from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Identity, Pipeline
from protocol import Decoder, Event
from tests.corpus import read

MINE = ("session", "gc", "heap", "capability")


@functools.cache
def _file_order(log: Path, wants: frozenset[int]) -> tuple[Event, ...]:
    dec = Decoder(only=wants)
    events = dec.feed(read(log))
    dec.close()
    return tuple(events)


def file_order_events(log: Path, wants) -> tuple[Event, ...]:
    """Events in file order (per-cap blocks: not time order), to feed as late."""
    return _file_order(log, frozenset(wants))


@functools.cache
def _time_order(log: Path, wants: frozenset[int]) -> tuple[Event, ...]:
    return tuple(sorted(_file_order(log, wants), key=lambda e: e.time))


def events(log: Path, wants) -> tuple[Event, ...]:
    return _time_order(log, frozenset(wants))


def run(deriver, evs) -> list:
    """Feed time-ordered events to a deriver, then flush at the last time."""
    out = []
    for ev in evs:
        out.extend(deriver.feed(ev))
    out.extend(deriver.flush(evs[-1].time if evs else 0))
    return out


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


def chunks_of(data: bytes, how) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == 1:
        return [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(how)  # "random" chunks, reproducible per seed
    out, i = [], 0
    while i < len(data):
        n = rng.choice((1, 2, 3, 7, 64, 333, 4096, 65536))
        out.append(data[i:i + n])
        i += n
    return out


def run_pipeline(log: Path, how="whole", derivers=MINE, settings: DeriveSettings | None = None,
                 order: OrderSettings | None = None, identity: Identity | None = None,
                 preamble=()):
    """The points of ``log`` (and the pipeline) fed in the given chunking."""
    pipe = Pipeline(settings or DeriveSettings(), identity or Identity(host="test"),
                    derivers=derivers, order=order, preamble=preamble)
    dec = Decoder(only=pipe.wants)
    points = []
    for chunk in chunks_of(read(log), how):
        events = dec.feed(chunk)
        if events:
            points.extend(pipe.feed(events))
        else:
            points.extend(pipe.feed([]))
    dec.close()
    points.extend(pipe.close())
    return points, pipe


@functools.cache
def whole(log: Path):
    return run_pipeline(log)
