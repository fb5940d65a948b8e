"""``ApiConfig``: the HTTP API's section of the settings (``api``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

ADMIN_TOKEN_ENV = "LIVEPROF_ADMIN_TOKEN"


def _admin_token_from_env() -> SecretStr | None:
    value = os.environ.get(ADMIN_TOKEN_ENV)
    return SecretStr(value) if value else None


class ApiConfig(BaseModel):
    """Where the API listens, its tokens and its limits (docs/api.md)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in compose)")
    port: int = Field(8080, ge=0, le=65535, description="0: any free port")
    admin_token: SecretStr | None = Field(
        default_factory=_admin_token_from_env,
        description=f"stored (hashed) as the first admin token when the token store is "
                    f"created; default: ${ADMIN_TOKEN_ENV}")
    token_file: Path | None = Field(
        None, description="the token store (JSON, hashes only); None: <state_dir>/api/tokens.json")
    connections_file: Path | None = Field(
        None, description="connections to dial, kept across restarts; "
                          "None: <state_dir>/api/connections.json")
    max_upload_bytes: int = Field(
        1 << 34, ge=1, description="largest eventlog accepted by one upload (413 past it)")
    max_concurrent_uploads: int = Field(
        4, ge=1, description="upload bodies received at once (429 past it)")
    max_open_uploads: int = Field(
        32, ge=1, description="resumable uploads open at once (429 past it)")
    request_timeout: float = Field(
        30.0, gt=0, description="longest a request other than an upload body may take, seconds")
    upload_idle_timeout: float = Field(
        60.0, gt=0, description="longest an upload body may stall between chunks, seconds")
    upload_min_rate: int = Field(
        1024, ge=0, description="an upload body must bring this many bytes per second over "
                                "every upload_rate_window spent waiting for it (408 past it)")
    upload_rate_window: float = Field(
        30.0, gt=0, description="seconds over which upload_min_rate is measured")
    max_inflate_ratio: int = Field(
        32, ge=1, description="a gzip/deflate body may expand at most this many times "
                               "(plus 1 MiB) (413 past it)")
    header_timeout: float = Field(
        10.0, gt=0, description="longest a connection may take to send a request's headers, "
                                "and stay idle between requests, seconds")
    max_connections: int = Field(
        256, ge=4, description="connections served at once; past it the oldest idle or "
                               "half-sent one is closed (lowered to half the file limit)")
    resumable_idle_timeout: float = Field(
        3600.0, gt=0, description="a resumable upload untouched this long is ended, seconds")
    chunk_bytes: int = Field(1 << 16, ge=1024, description="body chunk size fed to the decoder")
    sink_backlog_bytes: int = Field(
        16 << 20, ge=1, description="uploads wait while the InfluxDB sink holds more than this "
                                    "in memory (pacing, so an upload never outruns the sink)")
    shutdown_timeout: float = Field(5.0, ge=0, description="grace for requests in progress")

    def paths(self, state_dir: Path) -> tuple[Path, Path]:
        base = Path(state_dir) / "api"
        return (self.token_file or base / "tokens.json",
                self.connections_file or base / "connections.json")
