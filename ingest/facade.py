"""What the HTTP API may know of the service: this module, nothing else.

``ServiceFacade`` is the whole contract between ``ingest.api`` and the
running service (``ingest.service.Service`` implements it): the streams and
their figures, connections (sources added and removed at run time) and their
status, uploads (``ingest.sources.http_upload``), the store (InfluxDB) and
the alerts: their health, backlog, stored sessions and their deletion.  The
API imports this module and leaf utilities (``ingest.files``,
``ingest.urls``), never the service, sources, sinks or derivers
(tests/test_imports.py), so the service can change inside without the API
noticing, and there is no import cycle (the service starts the API).

Everything returned is a value (a record or a dict) the API may read, not a
handle into the service's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from .alerts import ALERT_GC_PAUSE, ALERT_GC_PAUSE_SHARE

if TYPE_CHECKING:
    # the records the facade hands out, by type only: importing the service's
    # modules here would make the settings (which compose ApiConfig) import themselves
    from .sinks import SinkStats as SinkStats
    from .sinks.mqtt import MqttAlertStats as AlertStats
    from .sources.http_upload import UploadStream as UploadStream
    from .streams import StreamRecord as StreamRecord

__all__ = ["ALERT_KINDS", "Readiness", "ServiceFacade", "ServiceNotReady", "SourceStatus",
           "StoreError"]

ALERT_KINDS = (ALERT_GC_PAUSE, ALERT_GC_PAUSE_SHARE)


@dataclass(frozen=True)
class SourceStatus:
    """How a connection added through the facade is doing."""

    running: bool
    peer: str | None
    stats: dict[str, int] = field(default_factory=dict)   # streams, connections, errors


@dataclass(frozen=True)
class Readiness:
    ready: bool
    error: str | None = None
    alerts: dict[str, Any] | None = None     # the alert publisher's status, when it is the cause


class ServiceFacade(Protocol):
    @property
    def state_dir(self) -> Path:
        """Where the service keeps its state (the API's tokens and connections)."""

    # -- streams and sessions ------------------------------------------------------------

    def stream_records(self) -> list[StreamRecord]:
        """Every stream this process knows: the live ones, then the last
        finished ones (up to a bound), each with its key (``record.key``)."""

    def forget_streams(self, keys: list[int]) -> None:
        """Drop finished streams from the list (a deleted session)."""

    def source_kinds_running(self) -> dict[str, int]:
        """Source tasks running now, by kind."""

    # -- connections ---------------------------------------------------------------------

    def connection_kinds(self) -> Mapping[str, type[BaseModel]]:
        """Kinds of source the API may add, with the model of each one's config."""

    def add_connection(self, kind: str, config: BaseModel) -> object:
        """Start a source of ``kind``; returns its handle."""

    async def remove_connection(self, handle: object) -> None:
        """Stop it: its open streams end, their last points are made."""

    def connection_status(self, handle: object) -> SourceStatus: ...

    # -- uploads -------------------------------------------------------------------------

    def open_upload(self, peer: str, app: str | None, host: str | None) -> UploadStream:
        """A new stream fed by an HTTP upload (``ServiceNotReady`` before the
        sinks are open)."""

    # -- the store and the alerts -------------------------------------------------------

    async def readiness(self) -> Readiness:
        """Whether the service takes data now (InfluxDB answers, setup done,
        the alert publisher runs)."""

    def sink_stats(self) -> SinkStats | None: ...

    def alert_stats(self) -> AlertStats | None: ...

    def alerts_status(self) -> dict[str, Any] | None: ...

    async def wait_for_room(self, limit_bytes: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) while the store's memory backlog is
        over ``limit_bytes``; False when it still is."""

    async def settle(self, session: str | None, timeout: float) -> bool:
        """Wait for the store to deliver what it was given; True when it did
        and dropped no point of ``session``."""

    async def stored_session(self, session: str, apps: list[str] | None) -> dict[str, Any] | None:
        """The session's ``session`` point as stored (tags and fields), among
        ``apps`` (None: any), or None."""

    async def delete_session(self, session: str, apps: list[str] | None) -> None:
        """Delete the session's points, every measurement and policy (among
        ``apps``; None: any); raises ``StoreError`` when the store refuses."""


class ServiceNotReady(Exception):
    """The service has not opened its sinks yet."""


class StoreError(Exception):
    """The store could not be asked or refused."""
