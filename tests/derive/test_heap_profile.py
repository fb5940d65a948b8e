"""heap_profile deriver: censuses, residency totals, top-N folding, modes."""

from __future__ import annotations

import collections

import pytest

from ingest.derive.base import DeriveSettings
from ingest.derive.heap_profile import MODES, HeapProfileDeriver
from tests.corpus import log_id, pick, summary, with_summary
from tests.derive.helpers import events, run

LOGS = [n for n in with_summary() if summary(n)["heap"]["heap_profile_samples"]]
BEGINS = (162, 166)


def reference_censuses(evs) -> dict[int, tuple[int, set]]:
    """Point time of each census -> (total residency, labels seen), each
    sample going to the latest census begin before it in time order."""
    out: dict[int, list] = {}
    current = None
    for ev in evs:
        if ev.type in BEGINS:
            current = ev.fields[1] if ev.type == 166 else ev.time
            out[current] = [0, 0]
        elif ev.type in (163, 164) and current is not None:
            out[current][0] += ev.fields[1]
            out[current][1] += 1
    return out


def test_logs_cover_every_kind_of_profile():
    modes = {p.tags["mode"] for n in LOGS for p in run_points(n, 10)}
    assert {"cost_centre", "closure_type", "biography", "closure_descr", "module"} <= modes


def run_points(name, top_n):
    return run(HeapProfileDeriver(DeriveSettings(top_n=top_n)), events(name, HeapProfileDeriver.wants))


@pytest.mark.parametrize("name", LOGS, ids=log_id)
def test_census_count_and_totals(name):
    evs = events(name, HeapProfileDeriver.wants)
    d = HeapProfileDeriver()
    points = run(d, evs)
    samples = summary(name)["heap"]["heap_profile_samples"]
    assert d.censuses == samples
    ref = reference_censuses(evs)
    non_empty = {t for t, (_, n) in ref.items() if n}
    by_time = collections.Counter()
    for p in points:
        by_time[p.time] += p.fields["residency_bytes"]
    assert set(by_time) == non_empty
    for t in non_empty:
        assert by_time[t] == ref[t][0]
    if len(non_empty) == len(ref):  # every census of these logs has samples
        assert len(by_time) == samples
    assert d.orphan_samples == 0


@pytest.mark.parametrize("name", LOGS, ids=log_id)
def test_mode_tag_from_heap_prof_begin(name):
    evs = events(name, HeapProfileDeriver.wants)
    breakdowns = {MODES[ev.fields[2]] for ev in evs if ev.type == 160}
    assert {p.tags["mode"] for p in run(HeapProfileDeriver(), evs)} == breakdowns


@pytest.mark.parametrize("name", LOGS)
def test_stable_names_keep_busiest_and_sum_rest(name):
    """A label is named the first time it is among a census's 2 largest and
    keeps its name (its full residency) in every later census; the rest is
    summed as other."""
    full = run_points(name, 10_000)
    top = run_points(name, 2)
    full_by = collections.defaultdict(dict)
    for p in full:
        full_by[p.time][p.tags["label"]] = p.fields["residency_bytes"]
    top_by = collections.defaultdict(dict)
    for p in top:
        top_by[p.time][p.tags["label"]] = p.fields["residency_bytes"]
    assert set(full_by) == set(top_by)
    named = set()
    for t in sorted(top_by):
        labels, census = top_by[t], full_by[t]
        assert sum(labels.values()) == sum(census.values())
        ranked = sorted(census, key=lambda k: (-census[k], k))
        named |= set(ranked[:2])
        assert set(labels) - {"other"} == named & set(census)
        for label in set(labels) - {"other"}:
            assert labels[label] == census[label]


def test_cost_centre_stacks_rendered_as_names():
    name = pick("heapprof.prof.N2.hc-p", "heapprof-small.prof.N2.hc-p")
    evs = events(name, HeapProfileDeriver.wants)
    names = {ev.fields[1] for ev in evs if ev.type == 161}
    modules = {ev.fields[2] for ev in evs if ev.type == 161}
    labels = {p.tags["label"] for p in run_points(name, 10_000)}
    assert labels
    for label in labels:
        for part in label.split("/"):
            assert part in names or part == "MAIN" or (
                part.endswith(".CAF") and part[:-4] in modules), label
    # a stack of depth > 1, outermost first: main is the root of the program's stacks
    deep = [lab for lab in labels if "/" in lab]
    assert deep and all(lab.startswith("main/") for lab in deep)


def test_biographical_census_at_sample_time():
    name = pick("heapprof.prof.nonthreaded.hb")
    evs = events(name, HeapProfileDeriver.wants)
    sample_times = {ev.fields[1] for ev in evs if ev.type == 166}
    points = run_points(name, 10)
    assert {p.time for p in points} == sample_times
    assert {p.tags["mode"] for p in points} == {"biography"}
