"""The InfluxQL of the scheme: rollup queries (continuous, and backfills over
a past range), continuous queries, database and retention-policy statements.
Every statement names the database it acts on: the sink's
(``influx.database``), passed in, never kept in the rollup settings.
Identifiers are quoted by ``ingest.sinks.influxdb.influxql``, the one quoting."""

from __future__ import annotations

from ingest.rollups.config import RetentionPolicy, RollupConfig
from ingest.rollups.fields import _COMPOSE, AGGREGATIONS, outputs
from ingest.sinks.influxdb.influxql import quote_ident


def qualified(database: str, policy: str, measurement: str) -> str:
    """``"database"."policy"."measurement"``."""
    return f"{quote_ident(database)}.{quote_ident(policy)}.{quote_ident(measurement)}"


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


def rollup_query(config: RollupConfig, database: str, level: int, measurement: str,
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
            f"INTO {qualified(database, r.name, measurement)} "
            f"FROM {qualified(database, source_policy(config, level), measurement)}"
            f"{where} GROUP BY time({r.interval}), *")


def cq_name(config: RollupConfig, level: int, measurement: str) -> str:
    return f"{config.cq_prefix}_{config.rollups[level].name}_{measurement}"


def cq_statement(config: RollupConfig, database: str, level: int, measurement: str) -> str:
    r = config.rollups[level]
    resample = ""
    if r.resample_every or r.resample_for:
        resample = " RESAMPLE"
        if r.resample_every:
            resample += f" EVERY {r.resample_every}"
        if r.resample_for:
            resample += f" FOR {r.resample_for}"
    return (f"CREATE CONTINUOUS QUERY {quote_ident(cq_name(config, level, measurement))} "
            f"ON {quote_ident(database)}{resample} "
            f"BEGIN {rollup_query(config, database, level, measurement)} END")


def continuous_queries(config: RollupConfig, database: str) -> dict[str, str]:
    """Every wanted continuous query by name: rollups in order, then
    measurements in table order."""
    return {cq_name(config, level, m): cq_statement(config, database, level, m)
            for level in range(len(config.rollups)) for m in AGGREGATIONS}


def _policy_clause(p: RetentionPolicy) -> str:
    clause = f"DURATION {p.duration} REPLICATION 1"
    if p.shard_duration:
        clause += f" SHARD DURATION {p.shard_duration}"
    return clause


def create_database(config: RollupConfig, database: str) -> str:
    """The database with the raw policy as its default (no ``autogen``)."""
    return (f"CREATE DATABASE {quote_ident(database)} WITH "
            f"{_policy_clause(config.raw)} NAME {quote_ident(config.raw.name)}")


def create_policy(database: str, p: RetentionPolicy, default: bool) -> str:
    return (f"CREATE RETENTION POLICY {quote_ident(p.name)} ON {quote_ident(database)} "
            f"{_policy_clause(p)}{' DEFAULT' if default else ''}")


def alter_policy(database: str, p: RetentionPolicy, default: bool) -> str:
    clause = f"DURATION {p.duration}"
    if p.shard_duration:
        clause += f" SHARD DURATION {p.shard_duration}"
    return (f"ALTER RETENTION POLICY {quote_ident(p.name)} ON {quote_ident(database)} "
            f"{clause}{' DEFAULT' if default else ''}")


def drop_cq(database: str, name: str) -> str:
    return f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(database)}"


def backfill_queries(config: RollupConfig, database: str, start_ns: int,
                     end_ns: int) -> list[tuple[str, str, str]]:
    """``(rollup, measurement, SELECT ... INTO ...)`` per rollup (finest
    first) and measurement over ``[start_ns, end_ns)`` widened to whole
    intervals: what the continuous queries would have written, for data older
    than their ``resample_for`` (an import of an old log, an outage longer
    than that)."""
    out: list[tuple[str, str, str]] = []
    for level, r in enumerate(config.rollups):
        iv = r.interval_ns
        start = (start_ns // iv) * iv
        end = -(-end_ns // iv) * iv
        out.extend((r.name, m, rollup_query(config, database, level, m, start, end)) for m in AGGREGATIONS)
    return out

