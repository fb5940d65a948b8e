"""Downsampling and retention for InfluxDB 1.x, as data (no IO).

The scheme (docs/rollups.md has the full story):

- the database (default ``liveprof``) has a **raw** retention policy (default
  name ``raw``, kept 7 days) which is its DEFAULT policy: the sink writes
  there;
- **rollup** policies (default ``1m`` kept 90 days, ``1h`` kept 3 years), each
  with a group-by interval; every interval is a multiple of the one before;
- one continuous query per rollup per measurement, ``<prefix>_<rollup>_<measurement>``
  (prefix default ``liveprof``): the first rollup reads raw, each later one
  reads the rollup before it (every output below composes exactly, means
  included, through their ``_sum``/``_count`` weights);
- tags are kept (``GROUP BY time(interval), *``); a rollup point is stamped
  with its interval's start.

``AGGREGATIONS`` says, for every measurement and field liveprof emits, which
functions roll it up.  The first function's output keeps the field's name, so
the same query reads raw and rollups alike for that aggregate; each further
function adds ``_<function>``; a ``mean`` also stores ``<field>_sum`` and
``<field>_count`` (the weights that make a mean of a coarser rollup exact).

``plan(config, observed)`` diffs the wanted state against what the server
has (``SHOW DATABASES``, ``SHOW RETENTION POLICIES``, ``SHOW CONTINUOUS
QUERIES``) and returns the steps, each with its InfluxQL statements;
``ingest.influx_setup`` does the IO.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .derive.point import Point

# -- what each field becomes -------------------------------------------------

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


# -- durations ---------------------------------------------------------------

_UNITS = {"ns": 1, "u": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
_PART = re.compile(r"(\d+)(ns|u|µ|ms|s|m|h|d|w)")
_FORMAT_ORDER = ("w", "d", "h", "m", "s", "ms", "u", "ns")


def parse_duration(text: str) -> int:
    """An InfluxQL duration (``90d``, ``1h30m``; ``INF`` for ever) in ns; INF is 0,
    as InfluxDB shows it."""
    text = text.strip()
    if text.upper() == "INF":
        return 0
    pos, total = 0, 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 1m, 1h, 7d, 52w, INF)")
    return total


def format_duration(ns: int) -> str:
    """The InfluxQL literal of ``ns`` (0: INF), in its largest whole unit."""
    if ns == 0:
        return "INF"
    for unit in _FORMAT_ORDER:
        if ns % _UNITS[unit] == 0:
            return f"{ns // _UNITS[unit]}{unit}"
    raise AssertionError("unreachable")


def parse_go_duration(text: str) -> int:
    """A duration as ``SHOW RETENTION POLICIES`` gives it (``168h0m0s``, ``0s``) in ns."""
    units = {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3,
             "µs": 10**3, "ns": 1}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(h|ms|us|µs|ns|m|s)", text):
        total += float(number) * units[unit]
    return round(total)


# -- configuration -------------------------------------------------------------

_NAME = re.compile(r"^[^\x00-\x1f\"\\]+$")


class RetentionPolicy(BaseModel):
    """A retention policy: ``duration`` (InfluxQL duration, or INF) and
    optionally its shard group duration (None: the server chooses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1)
    duration: str = "7d"
    shard_duration: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"retention policy name {value!r}: no quotes, backslashes or control characters")
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        ns = parse_duration(value)
        if ns and ns < 3600 * 10**9:
            raise ValueError("InfluxDB keeps data at least 1h: use a duration of 1h or more, or INF")
        return format_duration(ns)

    @field_validator("shard_duration")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        ns = parse_duration(value)
        if ns == 0:
            raise ValueError("a shard duration cannot be INF")
        return format_duration(ns)

    @property
    def duration_ns(self) -> int:
        return parse_duration(self.duration)

    @property
    def shard_duration_ns(self) -> int | None:
        return None if self.shard_duration is None else parse_duration(self.shard_duration)


class Rollup(RetentionPolicy):
    """A rollup: a retention policy whose points are the aggregates of the
    previous level (raw, or the rollup before) per ``interval``.

    The continuous query runs every ``resample_every`` (default: the
    interval) over the last ``resample_for`` (default: the interval), so data
    that arrives up to about ``resample_for - interval`` late is still rolled
    up."""

    interval: str
    resample_every: str | None = None
    resample_for: str | None = None

    @field_validator("interval", "resample_every", "resample_for")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is None:
            return None
        ns = parse_duration(value)
        if ns == 0:
            raise ValueError("must be a finite duration")
        return format_duration(ns)

    @model_validator(mode="after")
    def _resample(self):
        if self.resample_for is not None and self.resample_for_ns < self.interval_ns:
            raise ValueError(f"rollup {self.name}: resample_for ({self.resample_for}) must be at "
                             f"least the interval ({self.interval})")
        if self.duration_ns and self.duration_ns < self.interval_ns:
            raise ValueError(f"rollup {self.name}: duration shorter than its interval")
        return self

    @property
    def interval_ns(self) -> int:
        return parse_duration(self.interval)

    @property
    def resample_for_ns(self) -> int:
        return parse_duration(self.resample_for) if self.resample_for else self.interval_ns


def _default_rollups() -> list[Rollup]:
    return [
        Rollup(name="1m", interval="1m", duration="90d", resample_for="10m"),
        Rollup(name="1h", interval="1h", duration="1095d", resample_for="2h"),
    ]


class RpSwitch(BaseModel):
    """What the Grafana dashboards read to pick a retention policy by time range
    (docs/dashboards.md): one point per policy of measurement ``measurement``
    in the retention policy ``policy`` (kept for ever), stamped at time 0.

    A level serves the range lengths ``(start, end]`` (ms): the raw policy up
    to ``min_points`` intervals of the first rollup, each rollup from there up
    to ``min_points`` intervals of the next one (never beyond what it keeps),
    the last rollup everything longer.  So a panel always has at least about
    ``min_points`` intervals of the level it reads across its range, and the
    coarsest level that gives that many."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str = Field("forever", min_length=1, description="retention policy (INF) of the points")
    measurement: str = Field("rp_config", min_length=1)
    min_points: int = Field(300, ge=1, description="a level is chosen while a range holds at least "
                                                   "this many intervals of it")
    raw_interval: str = Field("1s", description="the smallest panel interval on raw: the derive window")

    @field_validator("policy", "measurement")
    @classmethod
    def _names(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"name {value!r}: no quotes, backslashes or control characters")
        return value

    @field_validator("raw_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        ns = parse_duration(value)
        if ns == 0:
            raise ValueError("must be a finite duration")
        return format_duration(ns)

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(name=self.policy, duration="INF")


class RollupConfig(BaseModel):
    """The retention and rollup section: database, raw policy, rollups, and
    the dashboards' retention-policy switch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str = Field("liveprof", min_length=1)
    raw: RetentionPolicy = RetentionPolicy(name="raw", duration="7d")
    rollups: list[Rollup] = Field(default_factory=_default_rollups)
    cq_prefix: str = Field("liveprof", min_length=1, pattern=r"^[A-Za-z0-9_]+$",
                           description="continuous queries named <prefix>_<rollup>_<measurement> "
                                       "are managed (created, replaced, dropped) by setup")
    rp_switch: RpSwitch = Field(default_factory=RpSwitch,
                                description="how dashboards pick a policy by time range")

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"database name {value!r}: no quotes, backslashes or control characters")
        return value

    @model_validator(mode="after")
    def _levels(self):
        names = [self.raw.name] + [r.name for r in self.rollups] + [self.rp_switch.policy]
        if len(set(names)) != len(names):
            raise ValueError(f"retention policy names must differ: {names}")
        previous: RetentionPolicy = self.raw
        previous_interval = 0
        for r in self.rollups:
            if previous_interval and (r.interval_ns <= previous_interval
                                      or r.interval_ns % previous_interval):
                raise ValueError(
                    f"rollup {r.name}: its interval ({r.interval}) must be a multiple of, and "
                    f"longer than, the interval of the rollup before ({format_duration(previous_interval)})")
            if previous.duration_ns and previous.duration_ns < r.resample_for_ns:
                raise ValueError(
                    f"rollup {r.name} reads {previous.name}, which keeps {previous.duration}: "
                    f"less than the {format_duration(r.resample_for_ns)} each of its runs reads")
            previous, previous_interval = r, r.interval_ns
        return self


# -- InfluxQL ---------------------------------------------------------------------

def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _qualified(config: RollupConfig, policy: str, measurement: str) -> str:
    return f"{quote_ident(config.database)}.{quote_ident(policy)}.{quote_ident(measurement)}"


def select_fields(measurement: str, level: int) -> str:
    """The aggregate list of a rollup of ``measurement``: ``level`` 0 reads raw
    points, a higher level reads the rollup points of the level before."""
    parts = []
    for o in outputs(measurement):
        if level == 0:
            expr = f"{o.function}({quote_ident(o.source)})"
        elif o.function == "mean":
            expr = (f"sum({quote_ident(o.source + '_sum')}) / "
                    f"sum({quote_ident(o.source + '_count')})")
        else:
            expr = f"{_COMPOSE[o.function]}({quote_ident(o.name)})"
        parts.append(f"{expr} AS {quote_ident(o.name)}")
    return ", ".join(parts)


def source_policy(config: RollupConfig, level: int) -> str:
    return config.raw.name if level == 0 else config.rollups[level - 1].name


def rollup_query(config: RollupConfig, level: int, measurement: str,
                 start_ns: int | None = None, end_ns: int | None = None) -> str:
    """``SELECT ... INTO <rollup> FROM <source> [WHERE time range] GROUP BY
    time(interval), *``: the body of the continuous query, or with a time
    range, a backfill of ``[start_ns, end_ns)``."""
    r = config.rollups[level]
    where = ""
    if start_ns is not None or end_ns is not None:
        conds = []
        if start_ns is not None:
            conds.append(f"time >= {int(start_ns)}")
        if end_ns is not None:
            conds.append(f"time < {int(end_ns)}")
        where = " WHERE " + " AND ".join(conds)
    return (f"SELECT {select_fields(measurement, level)} "
            f"INTO {_qualified(config, r.name, measurement)} "
            f"FROM {_qualified(config, source_policy(config, level), measurement)}"
            f"{where} GROUP BY time({r.interval}), *")


def cq_name(config: RollupConfig, level: int, measurement: str) -> str:
    return f"{config.cq_prefix}_{config.rollups[level].name}_{measurement}"


def cq_statement(config: RollupConfig, level: int, measurement: str) -> str:
    r = config.rollups[level]
    resample = ""
    if r.resample_every or r.resample_for:
        resample = " RESAMPLE"
        if r.resample_every:
            resample += f" EVERY {r.resample_every}"
        if r.resample_for:
            resample += f" FOR {r.resample_for}"
    return (f"CREATE CONTINUOUS QUERY {quote_ident(cq_name(config, level, measurement))} "
            f"ON {quote_ident(config.database)}{resample} "
            f"BEGIN {rollup_query(config, level, measurement)} END")


def continuous_queries(config: RollupConfig) -> dict[str, str]:
    """Every wanted continuous query by name: rollups in order, then
    measurements in table order."""
    return {cq_name(config, level, m): cq_statement(config, level, m)
            for level in range(len(config.rollups)) for m in AGGREGATIONS}


def _policy_clause(p: RetentionPolicy) -> str:
    clause = f"DURATION {p.duration} REPLICATION 1"
    if p.shard_duration:
        clause += f" SHARD DURATION {p.shard_duration}"
    return clause


def create_database(config: RollupConfig) -> str:
    """The database with the raw policy as its default (no ``autogen``)."""
    return (f"CREATE DATABASE {quote_ident(config.database)} WITH "
            f"{_policy_clause(config.raw)} NAME {quote_ident(config.raw.name)}")


def create_policy(config: RollupConfig, p: RetentionPolicy, default: bool) -> str:
    return (f"CREATE RETENTION POLICY {quote_ident(p.name)} ON {quote_ident(config.database)} "
            f"{_policy_clause(p)}{' DEFAULT' if default else ''}")


def alter_policy(config: RollupConfig, p: RetentionPolicy, default: bool) -> str:
    clause = f"DURATION {p.duration}"
    if p.shard_duration:
        clause += f" SHARD DURATION {p.shard_duration}"
    return (f"ALTER RETENTION POLICY {quote_ident(p.name)} ON {quote_ident(config.database)} "
            f"{clause}{' DEFAULT' if default else ''}")


def drop_cq(config: RollupConfig, name: str) -> str:
    return f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(config.database)}"


def statements(config: RollupConfig) -> list[str]:
    """Everything for an empty server, in order (what ``plan`` gives against
    nothing)."""
    return [s for step in plan(config, ServerState()) for s in step.statements]


def backfill_queries(config: RollupConfig, start_ns: int,
                     end_ns: int) -> list[tuple[str, str, str]]:
    """``(rollup, measurement, SELECT ... INTO ...)`` per rollup (finest
    first) and measurement over ``[start_ns, end_ns)`` widened to whole
    intervals: what the continuous queries would have written, for data older
    than their ``resample_for`` (an import of an old log, an outage longer
    than that)."""
    out = []
    for level, r in enumerate(config.rollups):
        iv = r.interval_ns
        start = (start_ns // iv) * iv
        end = -(-end_ns // iv) * iv
        out.extend((r.name, m, rollup_query(config, level, m, start, end)) for m in AGGREGATIONS)
    return out


# -- the dashboards' retention-policy switch ---------------------------------------

UNBOUNDED_MS = 2**53 - 1  # the last level's end: longer than any range (and exact as a float)


@dataclass(frozen=True, slots=True)
class RpLevel:
    """One point of the switch: ``rp`` serves ranges longer than ``start_ms``
    and at most ``end_ms``; ``kind`` is ``raw`` or ``rollup``; ``interval`` is
    the smallest group-by interval worth asking of it (its own)."""

    rp: str
    kind: str
    start_ms: int
    end_ms: int
    interval: str

    @property
    def interval_ms(self) -> int:
        return parse_duration(self.interval) // 1_000_000


def rp_levels(config: RollupConfig) -> list[RpLevel]:
    """The switch's points for ``config``, finest first; their ranges tile
    ``(0, UNBOUNDED_MS]`` (a level that a shorter retention squeezes out gets
    an empty range and is never chosen)."""
    sw = config.rp_switch
    levels = [(config.raw.name, "raw", sw.raw_interval, config.raw.duration_ns)]
    levels += [(r.name, "rollup", r.interval, r.duration_ns) for r in config.rollups]
    out: list[RpLevel] = []
    start = 0
    for i, (name, kind, interval, duration_ns) in enumerate(levels):
        if i == len(levels) - 1:
            end = UNBOUNDED_MS
        else:
            end = parse_duration(levels[i + 1][2]) // 1_000_000 * sw.min_points
            if duration_ns:
                end = min(end, duration_ns // 1_000_000)
            end = max(end, start)
        out.append(RpLevel(name, kind, start, end, interval))
        start = end
    return out


def rp_points(config: RollupConfig) -> list[str]:
    """The switch's points as line protocol (time 0), tagged ``policy``; encoded
    by ``Point.to_line``, the one line-protocol encoder."""
    m = config.rp_switch.measurement
    return [Point(m, {"policy": lv.rp},
                  {"rp": lv.rp, "kind": lv.kind, "start": lv.start_ms, "end": lv.end_ms,
                   "interval": lv.interval, "interval_ms": lv.interval_ms}, 0).to_line()
            for lv in rp_levels(config)]


def rp_select(config: RollupConfig) -> str:
    """What setup reads back to compare (``observe`` turns rows into ``RpLevel``)."""
    sw = config.rp_switch
    return f"SELECT * FROM {_qualified(config, sw.policy, sw.measurement)}"


def drop_rp_points(config: RollupConfig) -> str:
    # DROP SERIES names no policy: the measurement lives only in the switch's one
    return (f"DROP SERIES FROM {quote_ident(config.rp_switch.measurement)}")


# -- comparing with the server -------------------------------------------------------

_QUOTED_WORD = re.compile(r'"([A-Za-z0-9_]+)"')
_DURATION_LIT = re.compile(r"(?<![\w.])((?:\d+(?:ns|u|µ|ms|s|m|h|d|w))+)(?![\w])")


def normalize_cq(text: str) -> str:
    """A continuous query's text made comparable with what ``SHOW CONTINUOUS
    QUERIES`` gives back: InfluxDB quotes identifiers only when it must and
    writes durations in its largest unit (``14d`` comes back as ``2w``), so
    both sides drop quotes around plain words, write durations in ns and
    squeeze whitespace."""
    text = _QUOTED_WORD.sub(r"\1", text)
    text = _DURATION_LIT.sub(lambda m: f"{parse_duration(m.group(1))}ns", text)
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class ObservedPolicy:
    name: str
    duration_ns: int
    shard_duration_ns: int
    default: bool


@dataclass(slots=True)
class ServerState:
    """What the server has: does the database exist, its retention policies,
    and its continuous queries by name (their text as SHOW gives it)."""

    database_exists: bool = False
    policies: dict[str, ObservedPolicy] = field(default_factory=dict)
    continuous_queries: dict[str, str] = field(default_factory=dict)
    rp_levels: list[RpLevel] = field(default_factory=list)


Action = Literal["create", "alter", "replace", "drop", "keep"]


@dataclass(frozen=True, slots=True)
class Step:
    """One thing setup does (or finds already done)."""

    action: Action
    kind: Literal["database", "retention policy", "continuous query", "rp switch"]
    name: str
    statements: tuple[str, ...] = ()
    detail: str = ""
    # line protocol written (after the statements) to the retention policy ``policy``
    points: tuple[str, ...] = ()
    policy: str = ""

    def describe(self) -> str:
        verb = {"create": "created", "alter": "altered", "replace": "replaced",
                "drop": "dropped", "keep": "kept"}[self.action]
        return f"{verb} {self.kind} {self.name}" + (f": {self.detail}" if self.detail else "")


def _describe_policy(p: RetentionPolicy, default: bool) -> str:
    text = f"duration {p.duration}"
    if p.shard_duration:
        text += f", shard duration {p.shard_duration}"
    return text + (", default" if default else "")


def plan(config: RollupConfig, observed: ServerState) -> list[Step]:
    """The steps that bring ``observed`` to ``config``: database, then the raw
    policy (the default), the rollup policies, the dashboards' switch (its
    policy and points), the continuous queries.
    Policies are created or altered, never dropped (they hold data); managed
    continuous queries (named ``<cq_prefix>_...``) are created, replaced when
    their definition differs (InfluxDB cannot alter one), and dropped when no
    longer wanted; the switch's points are written when missing and rewritten
    (dropped first) when they differ."""
    steps: list[Step] = []
    db = config.database
    policies = dict(observed.policies)
    if not observed.database_exists:
        steps.append(Step("create", "database", db, (create_database(config),),
                          f"default retention policy {config.raw.name}"))
        steps.append(Step("create", "retention policy", config.raw.name, (),
                          _describe_policy(config.raw, True) + " (with the database)"))
        policies = {config.raw.name: ObservedPolicy(config.raw.name, config.raw.duration_ns,
                                                    config.raw.shard_duration_ns or 0, True)}
    else:
        steps.append(Step("keep", "database", db))
        steps.append(_policy_step(config, config.raw, True, policies.get(config.raw.name)))
    for r in config.rollups:
        steps.append(_policy_step(config, r, False, policies.get(r.name)))
    sw = config.rp_switch
    steps.append(_policy_step(config, sw.retention, False, policies.get(sw.policy)))
    steps.append(_rp_switch_step(config, observed.rp_levels if observed.database_exists else []))
    wanted = continuous_queries(config)
    existing = {} if not observed.database_exists else observed.continuous_queries
    for name, statement in wanted.items():
        have = existing.get(name)
        if have is None:
            steps.append(Step("create", "continuous query", name, (statement,)))
        elif normalize_cq(have) != normalize_cq(statement):
            steps.append(Step("replace", "continuous query", name,
                              (drop_cq(config, name), statement), "definition changed"))
        else:
            steps.append(Step("keep", "continuous query", name))
    for name in existing:
        if name.startswith(config.cq_prefix + "_") and name not in wanted:
            steps.append(Step("drop", "continuous query", name, (drop_cq(config, name),),
                              "no longer configured"))
    return steps


def _rp_switch_step(config: RollupConfig, have: list[RpLevel]) -> Step:
    want = rp_levels(config)
    name = f"{config.rp_switch.policy}.{config.rp_switch.measurement}"
    detail = "; ".join(
        f"{lv.rp} for ranges up to {format_duration(lv.end_ms * 1_000_000)}" if lv.end_ms < UNBOUNDED_MS
        else f"{lv.rp} beyond" for lv in want if lv.end_ms > lv.start_ms)
    points = tuple(rp_points(config))
    if not have:
        return Step("create", "rp switch", name, (), detail, points, config.rp_switch.policy)
    if sorted(have, key=lambda lv: lv.start_ms) == want:
        return Step("keep", "rp switch", name, (), detail)
    return Step("replace", "rp switch", name, (drop_rp_points(config),), detail, points,
                config.rp_switch.policy)


def _policy_step(config: RollupConfig, p: RetentionPolicy, default: bool,
                 have: ObservedPolicy | None) -> Step:
    if have is None:
        return Step("create", "retention policy", p.name, (create_policy(config, p, default),),
                    _describe_policy(p, default))
    changes = []
    if have.duration_ns != p.duration_ns:
        changes.append(f"duration {format_duration(have.duration_ns)} -> {p.duration}")
    if p.shard_duration_ns is not None and have.shard_duration_ns != p.shard_duration_ns:
        changes.append(f"shard duration {format_duration(have.shard_duration_ns)} -> {p.shard_duration}")
    if default and not have.default:
        changes.append("made the default")
    if not changes:
        return Step("keep", "retention policy", p.name, (), _describe_policy(p, default))
    return Step("alter", "retention policy", p.name,
                (alter_policy(config, p, default and not have.default),), "; ".join(changes))


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
