"""docs/rollups.md's per-measurement table says what AGGREGATIONS does."""

from __future__ import annotations

import re

from ingest import rollups

from .derived import REPO

KINDS = {"last": rollups.LAST, "event": rollups.EVENT, "gauge": rollups.GAUGE,
         "mean": rollups.MEAN, "max": rollups.MAX, "ratio": rollups.RATIO, "sum": rollups.SUM}


def documented() -> dict[str, dict[str, tuple[str, ...]]]:
    text = (REPO / "docs" / "rollups.md").read_text()
    table = text.split("Per measurement", 1)[1].split("\n\n", 2)[1]
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    current = None
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("measurement", "---"):
            continue
        if cells[0]:
            current = cells[0].strip("`")
        kind_text = cells[2]
        kind = KINDS[re.match(r"\w+", kind_text).group(0)]
        if kind == rollups.SUM and "plus" in kind_text and "_max" in kind_text:
            kind = rollups.SUM_MAX
        for name in re.findall(r"`([^`]+)`", cells[1]):
            out.setdefault(current, {})[name] = kind
    return out


def test_the_documented_table_is_the_code_table():
    assert documented() == rollups.AGGREGATIONS
