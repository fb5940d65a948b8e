"""Settings and counters of the InfluxDB sink (``ingest.sinks.influx``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from ingest.sinks.influx_api import check_credentials

__all__ = ["InfluxSinkConfig", "SinkStats"]

_SPOOL_BATCHES = 4  # the spool holds at least this many batches (it drops quarters)


class InfluxSinkConfig(BaseModel):
    """Where and how the InfluxDB sink writes.  Sizes are in bytes of line
    protocol (characters, which line protocol mostly is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("http://127.0.0.1:8086", description="InfluxDB 1.x base URL")
    database: str = Field("liveprof", min_length=1)
    retention_policy: str | None = Field(None, description="target RP; None: the database default")
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = Field(None, description="sent as 'Authorization: Token ...' instead of user/password")
    auth: Literal["basic", "query"] = Field(
        "basic", description="user/password as basic auth, or as u/p query parameters"
    )
    gzip: bool = True
    gzip_level: int = Field(1, ge=1, le=9)
    batch_lines: int = Field(5000, ge=1)
    batch_bytes: int = Field(1 << 20, ge=1)
    flush_interval: float = Field(1.0, gt=0, description="longest a line waits for its batch to fill")
    max_in_flight: int = Field(4, ge=1)
    timeout: float = Field(10.0, gt=0, description="per request")
    memory_max_bytes: int = Field(64 << 20, ge=1, description="buffer bound before spilling to disk")
    spool_dir: Path | None = Field(None, description="on-disk queue; None: drop the oldest when memory is full")
    spool_max_bytes: int = Field(1 << 30, ge=1, description="disk bound of the spool; at least "
                                                          "4 batches (batch_bytes)")
    spool_segment_bytes: int = Field(16 << 20, ge=1)
    retry_base_delay: float = Field(0.2, gt=0)
    retry_max_delay: float = Field(30.0, gt=0)
    retry_max_attempts: int | None = Field(
        None, ge=1, description="per batch for transient errors; None: until delivered (data waits on disk)"
    )
    spill_after: float = Field(
        3.0, gt=0, description="seconds a line may wait in memory (InfluxDB slow or down) before "
                               "it is written to the spool: what a crash during an outage can lose")
    down_log_interval: float = Field(30.0, gt=0, description="seconds between 'InfluxDB still "
                                                             "down' log lines during an outage")
    close_timeout: float = Field(10.0, ge=0, description="how long close() tries to deliver before spooling")
    check_on_start: bool = Field(True, description="probe /ping and the credentials when entering")
    create_database: bool = Field(False, description="CREATE DATABASE when entering (needs admin rights)")

    @field_validator("spool_max_bytes")
    @classmethod
    def _spool_holds_batches(cls, value: int, info: ValidationInfo) -> int:
        # the spool drops whole segments of a quarter of its bound: below a batch,
        # every batch spilled to it would be dropped at once
        batch = info.data.get("batch_bytes")
        if batch is not None and value < _SPOOL_BATCHES * batch:
            raise ValueError(
                f"{value} cannot hold {_SPOOL_BATCHES} batches of batch_bytes ({batch}): it must "
                f"be >= {_SPOOL_BATCHES * batch}; raise spool_max_bytes or lower batch_bytes")
        return value

    @model_validator(mode="after")
    def _credentials(self):
        check_credentials(self.user, self.password, self.token)
        if self.retry_max_delay < self.retry_base_delay:
            raise ValueError("retry_max_delay must be >= retry_base_delay")
        return self


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
    dropped_retries: int = 0  # lines of batches that ran out of retry_max_attempts
    dropped_shutdown: int = 0  # lines neither delivered nor spooled at close (no spool)
    spilled_late: int = 0  # lines moved to the spool for having waited spill_after
    buffered: int = 0  # lines in the memory buffer
    buffered_bytes: int = 0
    spooled: int = 0  # lines waiting on disk
    spooled_bytes: int = 0
    in_flight: int = 0  # requests in progress (or waiting to retry)
    in_flight_lines: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
