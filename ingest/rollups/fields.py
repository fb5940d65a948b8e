"""What each field becomes in a rollup: the aggregation table and the outputs
it gives (``AGGREGATIONS``, ``outputs``), and the coverage check against
what the derivers emit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# functions a field may be rolled up with, and how each composes when a
# coarser rollup reads a finer one ("mean" composes as sum(_sum) / sum(_count))
FUNCTIONS = ("sum", "max", "min", "mean", "last", "count")
_COMPOSE = {"sum": "sum", "max": "max", "min": "min", "last": "last", "count": "sum"}

SUM = ("sum",)                  # times, amounts, per-window counts
MAX = ("max",)                  # maxima posted by the deriver (heap's *_max_bytes)
LAST = ("last",)                # cumulative counters, identities, text
GAUGE = ("mean", "max")         # sampled levels: mean and maximum
MEAN = ("mean",)                # levels whose maximum has its own raw field
EVENT = ("sum", "max", "count") # one point per event with a duration: total, longest, how many
SUM_MAX = ("sum", "max")
RATIO = ("mean", "min")         # per-event ratio: mean and worst

_BLOCK_REASONS = ("mvar", "mvar_read", "black_hole", "stm", "delay", "read", "write",
                  "do_proc", "ccall", "ccall_interruptible", "throw_to", "other")
_SPARK_COUNTERS = ("created", "dud", "overflowed", "converted", "fizzled", "gcd")

AGGREGATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    # one point per stream: identity and heap parameters, constant per session
    "session": {name: LAST for name in (
        "program", "command", "args", "rts", "ghc_version", "rts_flavour", "pid", "ppid",
        "generations", "max_heap_bytes", "alloc_area_bytes", "mblock_bytes", "block_bytes",
        "caps")},
    # one point per collection
    "gc": {
        "pause_ns": EVENT,               # pause_ns (total), pause_ns_max, pause_ns_count (collections)
        "sync_ns": SUM_MAX,
        "caps": GAUGE,
        "request": LAST,
        "copied_bytes": SUM,
        "slop_bytes": GAUGE,
        "frag_bytes": GAUGE,
        "par_threads": GAUGE,
        "par_max_copied_bytes": SUM,
        "par_tot_copied_bytes": SUM,
        "par_balanced_copied_bytes": SUM,  # sum(balanced) / sum(tot): the interval's balance
        "balance": RATIO,
    },
    # one point per window
    "heap": {
        "size_bytes": MEAN, "size_max_bytes": MAX,
        "live_bytes": MEAN, "live_max_bytes": MAX,
        "blocks_bytes": MEAN, "blocks_max_bytes": MAX,
        "mblocks_current": GAUGE, "mblocks_needed": GAUGE, "mblocks_returned": GAUGE,
        "allocated_bytes": SUM,
        "alloc_rate_bytes_per_s": GAUGE,
    },
    "capability": {"mutator_ns": SUM, "gc_ns": SUM, "idle_ns": SUM},
    "threads": {
        "runtime_ns": SUM, "runs": SUM, "created": SUM, "finished": SUM, "blocked": SUM,
        **{f"blocked_{reason}": SUM for reason in _BLOCK_REASONS},
    },
    "spans": {"time_ns": SUM, "starts": SUM, "stops": SUM},
    "markers": {"text": LAST, "messages": SUM, "markers": SUM},
    "sparks": {
        **{name: LAST for name in _SPARK_COUNTERS},
        **{f"{name}_delta": SUM for name in _SPARK_COUNTERS},
        "remaining": GAUGE,
    },
    "heap_profile": {"residency_bytes": GAUGE},
    "nonmoving": {"duration_ns": EVENT, "marked_objects": SUM},
    "nonmoving_census": {"active_segments": GAUGE, "filled_segments": GAUGE,
                         "live_blocks": GAUGE, "live_bytes": GAUGE},
}


@dataclass(frozen=True, slots=True)
class Output:
    """One field of a rollup point: ``name`` = ``function`` over the raw
    ``source`` field."""

    name: str
    function: str
    source: str


def outputs(measurement: str) -> list[Output]:
    """The fields a rollup point of ``measurement`` has, in order."""
    out: list[Output] = []
    seen: set[str] = set()

    def add(name: str, fn: str, source: str) -> None:
        if name in seen:
            raise ValueError(f"{measurement}: rollup field {name!r} made twice")
        seen.add(name)
        out.append(Output(name, fn, source))

    for fld, functions in AGGREGATIONS[measurement].items():
        for i, fn in enumerate(functions):
            if fn not in FUNCTIONS:
                raise ValueError(f"{measurement}.{fld}: unknown function {fn!r}")
            if fn == "mean" and i:
                raise ValueError(f"{measurement}.{fld}: mean must come first")
            add(fld if i == 0 else f"{fld}_{fn}", fn, fld)
        if functions[0] == "mean":
            add(f"{fld}_sum", "sum", fld)
            add(f"{fld}_count", "count", fld)
    return out


def measurements_fields(points: Iterable[tuple[str, Iterable[str]]]) -> dict[str, set[str]]:
    """``{measurement: field names}`` of (measurement, fields) pairs: what the
    coverage check compares with ``AGGREGATIONS``."""
    out: dict[str, set[str]] = {}
    for m, fields in points:
        out.setdefault(m, set()).update(fields)
    return out


def uncovered(emitted: dict[str, set[str]]) -> dict[str, set[str]]:
    """The emitted measurements/fields that ``AGGREGATIONS`` does not roll up
    (a measurement missing altogether lists all its fields)."""
    out = {}
    for m, fields in emitted.items():
        missing = set(fields) - set(AGGREGATIONS.get(m, {}))
        if missing:
            out[m] = missing
    return out
