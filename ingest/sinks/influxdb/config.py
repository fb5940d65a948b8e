"""Settings and counters of the InfluxDB sink.

The settings have three sections besides the connection (``url``,
``database``, credentials, ``timeout``) and the lifecycle knobs:

- ``batch``: how lines are grouped into one ``/write`` request (``lines``,
  ``bytes``, ``flush_interval``), how many requests may be in flight
  (``max_in_flight``) and their compression (``gzip``, ``gzip_level``);
- ``buffer``: where lines wait while InfluxDB is slow or down: memory up to
  ``memory_max_bytes``, then the on-disk spool (``spool_dir``,
  ``spool_max_bytes``, ``spool_segment_bytes``); ``spill_after`` moves them to
  disk by age too;
- ``retry``: the backoff of a failing batch (``base_delay``, ``max_delay``)
  and its bound (``max_attempts``).

The flat keys of earlier versions (``batch_lines``, ``flush_interval``,
``spool_dir``, ``retry_base_delay``, ...; ``FLAT_KEYS`` lists them) are still
accepted wherever settings come from (TOML, ``LIVEPROF_INFLUX_<KEY>``
variables, keyword arguments), and mapped into their section; giving one
setting both ways (``batch_lines`` and ``batch.lines``) is an error, and an
error about a value given by a flat key names that key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import InitErrorDetails

from ingest.sinks.influxdb.client import check_credentials

__all__ = ["FLAT_KEYS", "BatchConfig", "BufferConfig", "InfluxSinkConfig", "RetryConfig", "SinkStats"]

SPOOL_BATCHES = 4  # the spool holds at least this many batches (it drops quarters)


class BatchConfig(BaseModel):
    """How lines are grouped into ``/write`` requests: a batch closes at
    ``lines`` lines or ``bytes`` bytes, or when its oldest line has waited
    ``flush_interval``; at most ``max_in_flight`` requests at once.

    ``flush_interval`` is short (250 ms) because it is the sink's share of
    the live delay (program -> dashboard, GC alert on the same points): a
    busy stream still fills batches by size, and a slow InfluxDB makes
    batches grow (while ``max_in_flight`` requests wait, lines pile up for
    the next one), so a short interval costs at most one small request per
    interval when the stream is quiet.  A live stream's submit that finds
    the next one (as far apart as the last two) would come after the oldest
    line's interval sends the batch at once, with that chunk's work, instead
    of a wake-up of its own for the interval's timer (docs/live.md, "CPU").
    ``liveprof import`` uses at least
    ``IMPORT_FLUSH_INTERVAL`` (``ingest/commands/importer.py``): it has no
    one waiting and flushes at the end of each file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lines: int = Field(5000, ge=1, description="lines per request at most")
    bytes: int = Field(1 << 20, ge=1, description="bytes of line protocol per request at most")
    flush_interval: float = Field(0.25, gt=0, description="longest a line waits for its batch to fill "
                                                             "(live streams; import waits longer)")
    max_in_flight: int = Field(4, ge=1, description="requests sent at once")
    gzip: bool = Field(True, description="compress request bodies")
    # level 1, measured on the 50 MB bench log's 9 MB of line protocol (issue 16): 38 ms,
    # 6.1x smaller; level 6 costs 2.6x that for 20% fewer bytes, 9 5x for 23%; InfluxDB's
    # inflate costs the same at any level (15 ms)
    gzip_level: int = Field(1, ge=1, le=9)


class BufferConfig(BaseModel):
    """Where lines wait while InfluxDB is slow or down: memory, then disk.
    Sizes are in bytes of line protocol."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_max_bytes: int = Field(64 << 20, ge=1, description="buffer bound before spilling to disk")
    spool_dir: Path | None = Field(None, description="on-disk queue; None: drop the oldest when memory "
                                                     "is full")
    spool_max_bytes: int = Field(1 << 30, ge=1, description="disk bound of the spool; at least "
                                                          "4 batches (batch.bytes)")
    spool_segment_bytes: int = Field(16 << 20, ge=1)
    spill_after: float = Field(
        3.0, gt=0, description="seconds a line may wait in memory (InfluxDB slow or down) before "
                               "it is written to the spool: what a crash during an outage can lose")


class RetryConfig(BaseModel):
    """Retries of a batch after a transient error (connection, timeout, 408,
    429, 5xx): a jittered delay growing from ``base_delay`` to ``max_delay``
    (``max_delay >= base_delay``, checked by ``InfluxSinkConfig``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_delay: float = Field(0.2, gt=0, description="first delay, seconds")
    max_delay: float = Field(30.0, gt=0, description="longest delay, seconds (>= base_delay)")
    max_attempts: int | None = Field(
        None, ge=1, description="per batch for transient errors; None: until delivered (data waits on disk)"
    )


# the flat keys of earlier versions: key -> (section, field)
FLAT_KEYS: dict[str, tuple[str, str]] = {
    "batch_lines": ("batch", "lines"),
    "batch_bytes": ("batch", "bytes"),
    "flush_interval": ("batch", "flush_interval"),
    "max_in_flight": ("batch", "max_in_flight"),
    "gzip": ("batch", "gzip"),
    "gzip_level": ("batch", "gzip_level"),
    "memory_max_bytes": ("buffer", "memory_max_bytes"),
    "spool_dir": ("buffer", "spool_dir"),
    "spool_max_bytes": ("buffer", "spool_max_bytes"),
    "spool_segment_bytes": ("buffer", "spool_segment_bytes"),
    "spill_after": ("buffer", "spill_after"),
    "retry_base_delay": ("retry", "base_delay"),
    "retry_max_delay": ("retry", "max_delay"),
    "retry_max_attempts": ("retry", "max_attempts"),
}


class InfluxSinkConfig(BaseModel):
    """Where and how the InfluxDB sink writes; sections ``batch``, ``buffer``
    and ``retry`` below.  The flat keys of earlier versions are accepted too,
    in the file and as ``LIVEPROF_INFLUX_<KEY>`` variables: ``batch_lines``,
    ``batch_bytes``, ``flush_interval``, ``max_in_flight``, ``gzip``,
    ``gzip_level`` (``batch.*``: ``batch.lines``, ``batch.bytes``, ...);
    ``memory_max_bytes``, ``spool_dir``, ``spool_max_bytes``,
    ``spool_segment_bytes``, ``spill_after`` (``buffer.*``, same names);
    ``retry_base_delay``, ``retry_max_delay``, ``retry_max_attempts``
    (``retry.base_delay``, ...).  One setting given both ways is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # keys of earlier versions (the flat keys), also read from LIVEPROF_INFLUX_<KEY>
    # (ingest/config.py)
    OLD_KEYS: ClassVar[tuple[str, ...]] = tuple(FLAT_KEYS)

    url: str = Field("http://127.0.0.1:8086", description="InfluxDB 1.x base URL")
    database: str = Field("liveprof", min_length=1)
    retention_policy: str | None = Field(None, description="target RP; None: the database default")
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = Field(None, description="sent as 'Authorization: Token ...' instead of "
                                                      "user/password")
    auth: Literal["basic", "query"] = Field(
        "basic", description="user/password as basic auth, or as u/p query parameters"
    )
    timeout: float = Field(10.0, gt=0, description="per request")
    batch: BatchConfig = Field(BatchConfig.model_validate({}), description="requests: size, time, "
                                                                          "concurrency")
    buffer: BufferConfig = Field(BufferConfig.model_validate({}), description="memory and disk buffer")
    retry: RetryConfig = Field(RetryConfig.model_validate({}), description="retries of transient errors")
    down_log_interval: float = Field(30.0, gt=0, description="seconds between 'InfluxDB still "
                                                             "down' log lines during an outage")
    close_timeout: float = Field(10.0, ge=0, description="how long close() tries to deliver before spooling")
    check_on_start: bool = Field(True, description="probe /ping and the credentials when entering")
    create_database: bool = Field(False, description="CREATE DATABASE when entering (needs admin rights)")

    def updated(self, overrides: Mapping[str, Any]) -> InfluxSinkConfig:
        """This configuration with ``overrides`` applied (flat or nested keys;
        a section given as a table updates only the fields it names)."""
        data = self.model_dump()
        nested, _ = _nest(dict(overrides))
        for key, value in nested.items():
            if isinstance(value, BaseModel):
                value = value.model_dump(exclude_unset=True)
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return InfluxSinkConfig.model_validate(data)

    @model_validator(mode="wrap")
    @classmethod
    def _validate(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> InfluxSinkConfig:
        """Map the flat keys into their sections before validating (a
        ``mode="before"`` step), check what spans sections after, and name
        the flat key in an error about a setting given by one."""
        data, given = _nest(data)
        try:
            config: InfluxSinkConfig = handler(data)
            config._check_bounds()
        except ValidationError as exc:
            if not given:
                raise
            raise _relocated(exc, given) from None
        check_credentials(config.user, config.password, config.token)
        return config

    def _check_bounds(self) -> None:
        retry = self.retry
        if retry.max_delay < retry.base_delay:
            raise _error(("retry", "max_delay"), retry.max_delay,
                         f"retry.max_delay ({retry.max_delay}) must be >= retry.base_delay "
                         f"({retry.base_delay})")
        # the spool drops whole segments of a quarter of its bound: below a batch,
        # every batch spilled to it would be dropped at once
        need = SPOOL_BATCHES * self.batch.bytes
        value = self.buffer.spool_max_bytes
        if value < need:
            raise _error(("buffer", "spool_max_bytes"), value,
                         f"{value} cannot hold {SPOOL_BATCHES} batches of batch.bytes (batch_bytes, "
                         f"{self.batch.bytes}): it must be >= {need}; raise spool_max_bytes or lower "
                         f"batch_bytes")


def _error(loc: tuple[str, ...], value: Any, message: str) -> ValidationError:
    """A validation error of one setting (so messages name where it came from)."""
    return ValidationError.from_exception_data(InfluxSinkConfig.__name__, [InitErrorDetails(
        type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})])


def _nest(data: Any) -> tuple[Any, dict[tuple[str, str], str]]:
    """``data`` with its flat keys moved into their sections, and which
    (section, field) came from which flat key."""
    if not isinstance(data, dict) or not any(k in FLAT_KEYS for k in data):
        return data, {}
    out = dict(data)
    given: dict[tuple[str, str], str] = {}
    for key in [k for k in out if k in FLAT_KEYS]:
        section, name = FLAT_KEYS[key]
        value = out.pop(key)
        current = out.get(section)
        if isinstance(current, BaseModel):
            current = current.model_dump(exclude_unset=True)
        current = dict(current) if isinstance(current, dict) else {}
        if name in current:
            raise ValueError(f"{key} and {section}.{name} are the same setting, given twice: "
                             f"keep {section}.{name} (the flat {key} is the older spelling)")
        current[name] = value
        out[section] = current
        given[(section, name)] = key
    return out, given


def _relocated(exc: ValidationError, given: dict[tuple[str, str], str]) -> ValidationError:
    """``exc`` with errors about a setting given by a flat key placed at that
    key, so messages name what the user wrote."""
    errors: list[InitErrorDetails] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        flat = given.get((str(loc[0]), str(loc[1]))) if len(loc) >= 2 else None
        detail = InitErrorDetails(type=err["type"], loc=(flat, *loc[2:]) if flat else loc, input=err["input"])
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        errors.append(detail)
    return ValidationError.from_exception_data(exc.title, errors)


@dataclasses.dataclass
class SinkStats:
    """Counters of one sink (lines unless said otherwise), for /metrics."""

    submitted: int = 0  # lines given to submit()
    written: int = 0  # lines InfluxDB stored
    batches: int = 0  # batches delivered (wholly or partly)
    requests: int = 0  # /write requests sent
    retried: int = 0  # requests repeated after a transient error
    dropped_4xx: int = 0  # lines InfluxDB refused (bad line, type conflict, ...)
    dropped_overflow: int = 0  # oldest lines dropped for the memory/disk bounds
    dropped_retries: int = 0  # lines of batches that ran out of retry.max_attempts
    dropped_shutdown: int = 0  # lines neither delivered nor spooled at close (no spool)
    spilled_late: int = 0  # lines moved to the spool for having waited spill_after
    buffered: int = 0  # lines in the memory buffer
    buffered_bytes: int = 0
    spooled: int = 0  # lines waiting on disk
    spooled_bytes: int = 0
    in_flight: int = 0  # requests in progress (or waiting to retry)
    in_flight_lines: int = 0
    retracted: int = 0  # points deleted for a live correction that moved them (docs/live.md)
    retract_failed: int = 0  # such deletes that failed, or were over the bound (left in place)
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
