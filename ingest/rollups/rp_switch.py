"""The dashboards' retention-policy switch: one point per policy (raw and
each rollup) saying which range lengths it serves, so Grafana reads the
coarsest level that still gives enough intervals (docs/dashboards.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.derive.point import Point
from ingest.rollups.config import RollupConfig
from ingest.rollups.durations import parse_duration
from ingest.rollups.influxql import qualified
from ingest.sinks.influxdb.influxql import quote_ident

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


def rp_select(config: RollupConfig, database: str) -> str:
    """What setup reads back to compare (``observe`` turns rows into ``RpLevel``)."""
    sw = config.rp_switch
    return f"SELECT * FROM {qualified(database, sw.policy, sw.measurement)}"


def drop_rp_points(config: RollupConfig) -> str:
    # DROP SERIES names no policy: the measurement lives only in the switch's one
    return (f"DROP SERIES FROM {quote_ident(config.rp_switch.measurement)}")

