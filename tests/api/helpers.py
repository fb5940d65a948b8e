"""What the API tests compare against: reference figures of a log, computed
without the service."""

from __future__ import annotations

from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Pipeline
from protocol import Decoder
from protocol.eventlog import CATALOGUE

BLOCK_MARKER = 18


def upload_wants() -> frozenset[int]:
    """The event types an upload stream decodes (all measurements, live merge)."""
    return Pipeline(DeriveSettings(caps_known=True), order=OrderSettings(live=True)).wants


def block_markers(data: bytes) -> int:
    dec = Decoder(only={BLOCK_MARKER})
    return len(dec.feed(data))


def expected_events(summary: dict, data: bytes) -> int:
    """Events an upload reports: the reference counts (ghc-events) of the
    types it decodes, plus the block markers (which ghc-events does not count)."""
    names = {CATALOGUE[t].name for t in upload_wants() if t in CATALOGUE and t != BLOCK_MARKER}
    counted = sum(n for name, n in summary["counts"].items() if name in names)
    return counted + block_markers(data)


def count(server, database, measurement: str, session: str, field: str = "pause_ns") -> int:
    """Points of ``measurement`` of one session in InfluxDB (those with ``field``)."""
    rows = server.series(f'SELECT count("{field}") FROM "{measurement}" WHERE "session" = '
                         f"'{session}'", database)
    return rows[0]["values"][0][1] if rows else 0


def total(server, database, measurement: str, session: str, field: str) -> int:
    rows = server.series(f'SELECT sum("{field}") FROM "{measurement}" WHERE "session" = '
                         f"'{session}'", database)
    return rows[0]["values"][0][1] if rows else 0
