"""The one place tests find eventlogs: the full corpus (``$LIVEPROF_CORPUS``,
default ../shared/corpus next to the repository) when it is there, else the
small copies and stand-ins in tests/data. Never an error for a missing corpus:
a fresh clone must pass its tests. A test that wants a particular corpus log
asks ``pick(name, stand_in)`` for it, naming the small log of tests/data that
shows the same thing (tests/data/README.md lists them)."""

from __future__ import annotations

import functools
import gzip
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
CORPUS = Path(os.environ.get("LIVEPROF_CORPUS") or REPO.parent / "shared" / "corpus")
SUBDIRS = ("eventlogs", "ghc-events-testdata")


def log_id(log: Path) -> str:
    """A log's name without ``.eventlog`` (test ids, keys of ``all_logs``)."""
    return log.name[: -len(".eventlog")]


@functools.lru_cache(maxsize=1)
def _logs() -> tuple[tuple[str, Path], ...]:
    logs = {log_id(p): p for p in sorted(DATA.glob("*.eventlog"))}
    for sub in SUBDIRS:
        for p in sorted((CORPUS / sub).glob("*.eventlog")):
            logs[log_id(p)] = p
    return tuple(sorted(logs.items()))


def all_logs() -> dict[str, Path]:
    """Every eventlog by name: the corpus's where it has one, else tests/data's
    (so tests/data's logs are always there, and more with the corpus)."""
    return dict(_logs())


def logs() -> list[Path]:
    return list(all_logs().values())


def pick(name: str, stand_in: str | None = None) -> Path:
    """The log ``name`` from the corpus, or without it tests/data's ``stand_in``
    (by default a copy of the same name)."""
    found = all_logs()
    if name in found:
        return found[name]
    return found[stand_in or name]


def big(min_size: int = 900_000) -> list[Path]:
    """Logs of at least ``min_size`` bytes (several in the corpus); without the
    corpus, the largest log there is, so such tests still run on something."""
    out = [p for p in logs() if p.stat().st_size >= min_size]
    return out or [max(logs(), key=lambda p: p.stat().st_size)]


def small(limit: int = 20_000) -> list[Path]:
    return [p for p in logs() if p.stat().st_size <= limit]


def sibling(log: Path, suffix: str) -> Path:
    return log.with_name(log_id(log) + suffix)


def with_reference(suffix: str) -> list[Path]:
    return [p for p in logs() if sibling(p, suffix).exists()]


def with_summary() -> list[Path]:
    return with_reference(".summary.json")


@functools.cache
def read(log: Path) -> bytes:
    return log.read_bytes()


def reference_lines(log: Path) -> list[str]:
    with gzip.open(sibling(log, ".jsonl.gz"), "rt", encoding="utf-8") as f:
        return f.read().splitlines()


@functools.cache
def reference(log: Path) -> tuple[dict, ...]:
    """The official parser's events of ``log``, in file order."""
    return tuple(json.loads(line) for line in reference_lines(log))


def summary(log: Path) -> dict:
    return json.loads(sibling(log, ".summary.json").read_text())
