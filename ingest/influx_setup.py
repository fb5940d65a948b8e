"""Apply the retention and rollup scheme of ``ingest.rollups`` to an InfluxDB
1.x server, idempotently, over the v1 HTTP API (``POST /query``).

``await setup(config)`` reads what the server has (``SHOW DATABASES``,
``SHOW RETENTION POLICIES``, ``SHOW CONTINUOUS QUERIES``), plans the
difference (``rollups.plan``) and runs it; the report says what was created,
altered, replaced, dropped or kept.  Run it twice: the second report keeps
everything.  It needs an admin user when authentication is on (databases,
retention policies and continuous queries are admin statements).

``await backfill(config, start_ns, end_ns)`` runs the rollup queries over a
past time range (continuous queries only ever look at the last
``resample_for`` before the wall clock).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ingest.rollups import (
    ObservedPolicy,
    RollupConfig,
    RpLevel,
    ServerState,
    Step,
    backfill_queries,
    parse_go_duration,
    plan,
    rp_select,
)
from ingest.sinks.errors import InfluxQueryError, SinkAuthError, SinkError
from ingest.sinks.influxdb import InfluxClient, check_credentials, quote_ident

if TYPE_CHECKING:
    from ingest.sinks.influxdb import InfluxSinkConfig

__all__ = ["BackfillReport", "InfluxSetupConfig", "SetupReport", "backfill", "observe", "setup"]


class InfluxSetupConfig(BaseModel):
    """Where to apply the scheme (server and ``database``: the sink's, see
    ``from_sink``) and with which credentials: user/password (basic auth, or
    ``u``/``p`` parameters with ``auth="query"``) or a token
    (``Authorization: Token``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("http://127.0.0.1:8086", description="InfluxDB 1.x base URL")
    database: str = Field("liveprof", min_length=1, description="the sink's database (influx.database)")
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    auth: Literal["basic", "query"] = "basic"
    timeout: float = Field(30.0, gt=0, description="per request, seconds")
    rollups: RollupConfig = RollupConfig.model_validate({})

    @model_validator(mode="after")
    def _credentials(self) -> InfluxSetupConfig:
        check_credentials(self.user, self.password, self.token)
        return self

    @classmethod
    def from_sink(cls, sink: InfluxSinkConfig, rollups: RollupConfig | None = None) -> InfluxSetupConfig:
        """The setup matching an ``InfluxSinkConfig``: same server, credentials
        and database (``rollups`` gives the policies; default the standard scheme)."""
        return cls.model_validate({"url": sink.url, "database": sink.database, "user": sink.user,
                                   "password": sink.password, "token": sink.token, "auth": sink.auth,
                                   "rollups": rollups or RollupConfig.model_validate({})})


@dataclasses.dataclass
class SetupReport:
    """What setup did, step by step (``rollups.Step``)."""

    database: str
    steps: list[Step] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> list[Step]:
        return [s for s in self.steps if s.action != "keep"]

    @property
    def kept(self) -> list[Step]:
        return [s for s in self.steps if s.action == "keep"]

    def lines(self) -> list[str]:
        return [s.describe() for s in self.steps]


def _client(config: InfluxSetupConfig, session: aiohttp.ClientSession) -> InfluxClient:
    return InfluxClient(
        session, config.url, user=config.user,
        password=config.password.get_secret_value() if config.password else None,
        token=config.token.get_secret_value() if config.token else None,
        auth_in_query=config.auth == "query", timeout=config.timeout)


async def observe(client: InfluxClient, database: str, rollups: RollupConfig | None = None) -> ServerState:
    """What the server has for ``database`` (with ``rollups``, also the
    dashboards' switch points, when their policy exists)."""
    state = ServerState()
    series = await client.query("SHOW DATABASES")
    names = {row[0] for s in series for row in s.values}
    state.database_exists = database in names
    if not state.database_exists:
        return state
    for s in await client.query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}"):
        for row in s.rows():
            state.policies[row["name"]] = ObservedPolicy(
                name=row["name"], duration_ns=parse_go_duration(row["duration"]),
                shard_duration_ns=parse_go_duration(row["shardGroupDuration"]),
                default=bool(row["default"]))
    for s in await client.query("SHOW CONTINUOUS QUERIES"):
        if s.name == database:
            for row in s.rows():
                state.continuous_queries[row["name"]] = row["query"]
    if rollups is not None and rollups.rp_switch.policy in state.policies:
        for s in await client.query(rp_select(rollups, database), database=database):
            for row in s.rows():
                try:
                    state.rp_levels.append(RpLevel(str(row["rp"]), str(row["kind"]), int(row["start"]),
                                                   int(row["end"]), str(row["interval"])))
                except (KeyError, TypeError, ValueError):
                    state.rp_levels.append(RpLevel("?", "?", -1, -1, "?"))  # malformed: rewrite
    return state


async def setup(config: InfluxSetupConfig, *, session: aiohttp.ClientSession | None = None) -> SetupReport:
    """Bring the server to ``config.rollups``; raises ``SinkError`` (auth,
    unreachable, a statement InfluxDB refused, naming it)."""
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await _setup(config, _client(config, own))
    return await _setup(config, _client(config, session))


async def _setup(config: InfluxSetupConfig, client: InfluxClient) -> SetupReport:
    rollups, database = config.rollups, config.database
    for attempt in range(2):
        state = await observe(client, database, rollups)
        steps = plan(rollups, database, state)
        try:
            for step in steps:
                for statement in step.statements:
                    # the switch's DROP SERIES names no database: it needs the db parameter
                    await _run(client, statement, step, database if step.kind == "rp switch" else None)
                if step.points:
                    await _write(client, database, step)
        except InfluxQueryError:
            # someone else (a sink's CREATE DATABASE) changed the server
            # between looking and acting: look again once
            if attempt == 0 and steps and steps[0].action == "create":
                continue
            raise
        return SetupReport(database, steps)
    raise AssertionError("unreachable")


async def _run(client: InfluxClient, statement: str, step: Step, database: str | None = None) -> None:
    try:
        await client.query(statement, database=database)
    except InfluxQueryError as exc:
        raise InfluxQueryError(f"{step.action} {step.kind} {step.name}: InfluxDB refused "
                               f"{statement!r}: {exc}", status=exc.status) from exc


async def _write(client: InfluxClient, database: str, step: Step) -> None:
    try:
        status, text, _ = await client.write("\n".join(step.points).encode(), database,
                                             retention_policy=step.policy)
    except SinkError as exc:  # no answer
        raise SinkError(f"{step.action} {step.kind} {step.name}: {exc}",
                        retryable=exc.retryable) from exc
    if status in (401, 403):
        raise SinkAuthError(client.auth_message(status, text), status=status)
    if status != 204:
        raise InfluxQueryError(f"{step.action} {step.kind} {step.name}: InfluxDB refused the "
                               f"write to {step.policy!r} ({status}): {text.strip()[:200]}",
                               status=status)


@dataclasses.dataclass
class BackfillReport:
    """Points written per ``<rollup>.<measurement>``; where some fell outside
    the rollup's retention (an old log), InfluxDB stored the rest and says
    only how many it dropped: ``beyond_retention`` has those counts."""

    written: dict[str, int] = dataclasses.field(default_factory=dict)
    beyond_retention: dict[str, int] = dataclasses.field(default_factory=dict)


_BEYOND = re.compile(r"points beyond retention policy dropped=(\d+)")


async def backfill(config: InfluxSetupConfig, start_ns: int, end_ns: int, *,
                   session: aiohttp.ClientSession | None = None) -> BackfillReport:
    """Roll up ``[start_ns, end_ns)`` (widened to whole intervals) into every
    rollup, finest first."""
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await _backfill(config, _client(config, own), start_ns, end_ns)
    return await _backfill(config, _client(config, session), start_ns, end_ns)


async def _backfill(config: InfluxSetupConfig, client: InfluxClient, start_ns: int,
                    end_ns: int) -> BackfillReport:
    report = BackfillReport()
    for rollup, measurement, q in backfill_queries(config.rollups, config.database, start_ns, end_ns):
        key = f"{rollup}.{measurement}"
        try:
            series = await client.query(q)
        except InfluxQueryError as exc:
            m = _BEYOND.search(str(exc))
            if m is None:
                raise InfluxQueryError(f"backfill of {key}: {exc}", status=exc.status) from exc
            report.beyond_retention[key] = int(m.group(1))
            continue
        report.written[key] = sum(int(row[1]) for s in series for row in s.values)
    return report
