"""Where the test eventlogs are: tests/data (always, small) and the full corpus
(``$LIVEPROF_CORPUS``, default ../shared/corpus next to the repository)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
CORPUS = Path(os.environ.get("LIVEPROF_CORPUS", REPO.parent / "shared" / "corpus"))


def all_logs() -> dict[str, Path]:
    """Every eventlog by name: the corpus's when it is there, else tests/data's."""
    logs = {p.name[: -len(".eventlog")]: p for p in sorted(DATA.glob("*.eventlog"))}
    for sub in ("eventlogs", "ghc-events-testdata"):
        for p in sorted((CORPUS / sub).glob("*.eventlog")):
            logs[p.name[: -len(".eventlog")]] = p
    return logs


def sibling(log: Path, suffix: str) -> Path:
    return log.with_name(log.name[: -len(".eventlog")] + suffix)


def reference_lines(log: Path) -> list[str]:
    with gzip.open(sibling(log, ".jsonl.gz"), "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def summary(log: Path) -> dict:
    return json.loads(sibling(log, ".summary.json").read_text())


def with_reference(suffix: str) -> list[Path]:
    return [p for p in all_logs().values() if sibling(p, suffix).exists()]


def small(limit: int = 20_000) -> list[Path]:
    return [p for p in all_logs().values() if p.stat().st_size <= limit]
