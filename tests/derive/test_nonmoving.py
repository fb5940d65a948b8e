"""non-moving GC derivers against the reference dumps and .reference texts."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from ingest.derive.nonmoving import NonmovingCensusDeriver, NonmovingPhasesDeriver
from tests.corpus import log_id, sibling, summary, with_summary
from tests.derive.helpers import events, run

PHASE_LOGS = [n for n in with_summary() if summary(n)["counts"].get("ConcMarkBegin")]
CENSUS_LOGS = [n for n in with_summary() if summary(n)["counts"].get("NonmovingHeapCensus")]
PHASES = {"mark": ("ConcMarkBegin", "ConcMarkEnd"), "sync": ("ConcSyncBegin", "ConcSyncEnd"),
          "sweep": ("ConcSweepBegin", "ConcSweepEnd")}
CENSUS_LINE = re.compile(r"^(\d+): nonmoving heap census (\d+): (\d+) active segments, "
                         r"(\d+) filled segments, (\d+) live blocks$")


def dump(name) -> list[dict]:
    with gzip.open(sibling(name, ".jsonl.gz"), "rt") as f:
        return [json.loads(line) for line in f]


def census_form(name) -> int:
    return next(e["size"] for e in summary(name)["header_event_types"] if e["num"] == 207)


@pytest.mark.parametrize("name", PHASE_LOGS, ids=log_id)
def test_phase_durations_match_dump(name):
    ref = dump(name)
    d = NonmovingPhasesDeriver()
    points = run(d, events(name, NonmovingPhasesDeriver.wants))
    counts = summary(name)["counts"]
    for phase, (begin, end) in PHASES.items():
        mine = [p for p in points if p.tags["phase"] == phase]
        assert len(mine) == min(counts.get(begin, 0), counts.get(end, 0))
        begins = [e["t"] for e in ref if e["type"] == begin]
        ends = [e["t"] for e in ref if e["type"] == end]
        if len(begins) == len(ends):  # FIFO or not, the total is the same
            assert sum(p.fields["duration_ns"] for p in mine) == sum(ends) - sum(begins)
        assert all(p.fields["duration_ns"] >= 0 for p in mine)
    marked = sum(e["fields"]["concMarkedObjectCount"] for e in ref if e["type"] == "ConcMarkEnd")
    assert sum(p.fields.get("marked_objects", 0) for p in points) == marked
    assert d.unmatched == 0


def reference_census(name) -> list[tuple[int, int, int, int, int]]:
    """(t, block size in bytes, active, filled, live) from the newer ghc-events'
    .reference where there is one (it prints byte sizes for both forms), else
    from the dump of a 13-byte log (log2 sizes)."""
    path = sibling(name, ".eventlog.reference")
    if path.exists():
        out = []
        for line in path.read_text().splitlines():
            m = CENSUS_LINE.match(line)
            if m:
                out.append(tuple(int(g) for g in m.groups()))
        return out
    assert census_form(name) == 13
    return [(e["t"], 1 << e["fields"]["nonmovingCensusBlkSize"], e["fields"]["nonmovingCensusActiveSegs"],
             e["fields"]["nonmovingCensusFilledSegs"], e["fields"]["nonmovingCensusLiveBlocks"])
            for e in dump(name) if e["type"] == "NonmovingHeapCensus"]


@pytest.mark.parametrize("name", CENSUS_LOGS, ids=log_id)
def test_census_matches_reference(name):
    points = run(NonmovingCensusDeriver(), events(name, NonmovingCensusDeriver.wants))
    got = sorted((p.time, int(p.tags["block_size"]), p.fields["active_segments"],
                  p.fields["filled_segments"], p.fields["live_blocks"]) for p in points)
    assert got == sorted(reference_census(name))
    assert len(got) == summary(name)["counts"]["NonmovingHeapCensus"]
    for p in points:
        assert p.fields["live_bytes"] == p.fields["live_blocks"] * int(p.tags["block_size"])


def test_both_census_forms_are_covered():
    assert {census_form(n) for n in CENSUS_LOGS} == {13, 14}
