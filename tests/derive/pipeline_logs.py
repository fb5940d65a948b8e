"""Corpus access for the tests of the order merge, the clock, the pipeline and
the gc/heap/capability/session derivers: real logs, their summaries and
reference dumps, and helpers that run a log through a Pipeline in chunks."""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
from pathlib import Path

from protocol import Decoder
from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Identity, Pipeline

REPO = Path(__file__).resolve().parents[2]
CORPUS = (REPO / os.environ.get("LIVEPROF_CORPUS", "../shared/corpus")).resolve()
MINE = ("session", "gc", "heap", "capability")


def all_logs() -> list[Path]:
    out = []
    for sub in ("eventlogs", "ghc-events-testdata"):
        out.extend(sorted((CORPUS / sub).glob("*.eventlog")))
    assert out, f"no corpus logs under {CORPUS}"
    return out


def with_summary() -> list[Path]:
    return [p for p in all_logs() if sibling(p, ".summary.json").exists()]


def sibling(log: Path, suffix: str) -> Path:
    return log.with_name(log.name[: -len(".eventlog")] + suffix)


def log_id(p: Path) -> str:
    return p.name[: -len(".eventlog")]


@functools.lru_cache(maxsize=None)
def summary(log: Path) -> dict:
    return json.loads(sibling(log, ".summary.json").read_text())


@functools.lru_cache(maxsize=None)
def reference(log: Path) -> tuple[dict, ...]:
    with gzip.open(sibling(log, ".jsonl.gz"), "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


@functools.lru_cache(maxsize=None)
def data(log: Path) -> bytes:
    return log.read_bytes()


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


def run(log: Path, how="whole", derivers=MINE, settings: DeriveSettings | None = None,
        order: OrderSettings | None = None, identity: Identity | None = None,
        preamble=()):
    """The points of ``log`` (and the pipeline) fed in the given chunking."""
    pipe = Pipeline(settings or DeriveSettings(), identity or Identity(host="test"),
                    derivers=derivers, order=order, preamble=preamble)
    dec = Decoder(only=pipe.wants)
    points = []
    for chunk in chunks_of(data(log), how):
        events = dec.feed(chunk)
        if events:
            points.extend(pipe.feed(events))
        else:
            points.extend(pipe.feed([]))
    dec.close()
    points.extend(pipe.close())
    return points, pipe


@functools.lru_cache(maxsize=None)
def whole(log: Path):
    return run(log)
