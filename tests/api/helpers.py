"""What the API tests compare against: reference figures of a log, computed
without the service."""

from __future__ import annotations

from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Pipeline
from protocol import Decoder

BLOCK_MARKER = 18


def upload_wants() -> frozenset[int]:
    """The event types an upload stream decodes (all measurements, live merge)."""
    return Pipeline(DeriveSettings(caps_known=True), order=OrderSettings(live=True)).wants


def expected_events(summary: dict, data: bytes) -> int:
    """Events an upload reports: every event read, decoded or skipped, as the
    reference parser (ghc-events) counts them (block markers aside)."""
    return summary["event_count"]


def events_read(data: bytes) -> int:
    """Every complete event in ``data`` (block markers aside)."""
    return sum(1 for ev in Decoder().feed(data) if ev.type != BLOCK_MARKER)


def count(server, database, measurement: str, session: str, field: str = "pause_ns") -> int:
    """Points of ``measurement`` of one session in InfluxDB (those with ``field``)."""
    rows = server.series(f'SELECT count("{field}") FROM "{measurement}" WHERE "session" = '
                         f"'{session}'", database)
    return rows[0]["values"][0][1] if rows else 0


def total(server, database, measurement: str, session: str, field: str) -> int:
    rows = server.series(f'SELECT sum("{field}") FROM "{measurement}" WHERE "session" = '
                         f"'{session}'", database)
    return rows[0]["values"][0][1] if rows else 0
