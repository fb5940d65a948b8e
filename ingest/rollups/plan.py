"""Comparing the scheme with the server: what it has (``ServerState``), and
the steps that bring it to the settings (``plan``), each with its InfluxQL;
``ingest.influx_setup`` does the IO."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ingest.rollups.config import RetentionPolicy, RollupConfig
from ingest.rollups.durations import format_duration, parse_duration
from ingest.rollups.influxql import alter_policy, continuous_queries, create_database, create_policy, drop_cq
from ingest.rollups.rp_switch import UNBOUNDED_MS, RpLevel, drop_rp_points, rp_levels, rp_points

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


def plan(config: RollupConfig, database: str, observed: ServerState) -> list[Step]:
    """The steps that bring ``observed`` to ``config``: database, then the raw
    policy (the default), the rollup policies, the dashboards' switch (its
    policy and points), the continuous queries.
    Policies are created or altered, never dropped (they hold data); managed
    continuous queries (named ``<cq_prefix>_...``) are created, replaced when
    their definition differs (InfluxDB cannot alter one), and dropped when no
    longer wanted; the switch's points are written when missing and rewritten
    (dropped first) when they differ."""
    steps: list[Step] = []
    db = database
    policies = dict(observed.policies)
    if not observed.database_exists:
        steps.append(Step("create", "database", db, (create_database(config, db),),
                          f"default retention policy {config.raw.name}"))
        steps.append(Step("create", "retention policy", config.raw.name, (),
                          _describe_policy(config.raw, True) + " (with the database)"))
        policies = {config.raw.name: ObservedPolicy(config.raw.name, config.raw.duration_ns,
                                                    config.raw.shard_duration_ns or 0, True)}
    else:
        steps.append(Step("keep", "database", db))
        steps.append(_policy_step(db, config.raw, True, policies.get(config.raw.name)))
    for r in config.rollups:
        steps.append(_policy_step(db, r, False, policies.get(r.name)))
    sw = config.rp_switch
    steps.append(_policy_step(db, sw.retention, False, policies.get(sw.policy)))
    steps.append(_rp_switch_step(config, observed.rp_levels if observed.database_exists else []))
    wanted = continuous_queries(config, db)
    existing = {} if not observed.database_exists else observed.continuous_queries
    for name, statement in wanted.items():
        have = existing.get(name)
        if have is None:
            steps.append(Step("create", "continuous query", name, (statement,)))
        elif normalize_cq(have) != normalize_cq(statement):
            steps.append(Step("replace", "continuous query", name,
                              (drop_cq(db, name), statement), "definition changed"))
        else:
            steps.append(Step("keep", "continuous query", name))
    for name in existing:
        if name.startswith(config.cq_prefix + "_") and name not in wanted:
            steps.append(Step("drop", "continuous query", name, (drop_cq(db, name),),
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


def _policy_step(database: str, p: RetentionPolicy, default: bool,
                 have: ObservedPolicy | None) -> Step:
    if have is None:
        return Step("create", "retention policy", p.name, (create_policy(database, p, default),),
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
                (alter_policy(database, p, default and not have.default),), "; ".join(changes))



def statements(config: RollupConfig, database: str) -> list[str]:
    """Everything for an empty server, in order (what ``plan`` gives against
    nothing)."""
    return [s for step in plan(config, database, ServerState()) for s in step.statements]


