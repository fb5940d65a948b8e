"""The retention and rollup settings: ``RetentionPolicy``, ``Rollup``, the
dashboards' ``RpSwitch`` and the ``RollupConfig`` section that holds them."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ingest.rollups.durations import format_duration, parse_duration

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
    def _resample(self) -> Rollup:
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
    """The retention and rollup section: raw policy, rollups, and the
    dashboards' retention-policy switch.  The database is the sink's
    (``influx.database``): it is defined there only, and the setup and the
    statements take it from there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # keys accepted only to be refused with a clear message (also read from
    # LIVEPROF_ROLLUPS_<KEY>, ingest/config.py): rollups.database was listed
    # in docs/configuration.md, so a user may have set it
    OLD_KEYS: ClassVar[tuple[str, ...]] = ("database",)

    raw: RetentionPolicy = RetentionPolicy(name="raw", duration="7d")
    rollups: list[Rollup] = Field(default_factory=_default_rollups)
    cq_prefix: str = Field("liveprof", min_length=1, pattern=r"^[A-Za-z0-9_]+$",
                           description="continuous queries named <prefix>_<rollup>_<measurement> "
                                       "are managed (created, replaced, dropped) by setup")
    rp_switch: RpSwitch = Field(RpSwitch.model_validate({}),
                                description="how dashboards pick a policy by time range")

    @model_validator(mode="before")
    @classmethod
    def _no_database(cls, data: Any) -> Any:
        if isinstance(data, dict) and "database" in data:
            raise ValueError("rollups.database is no longer a setting: the rollups live in the "
                             "database the sink writes, set influx.database "
                             "(LIVEPROF_INFLUX_DATABASE, --database) instead")
        return data

    @model_validator(mode="after")
    def _levels(self) -> RollupConfig:
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

