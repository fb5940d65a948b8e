"""What a sink offers the rest of the service: the contract, not a class.

``PointSink`` is all a stream needs (``submit`` never blocks).  ``Sink`` is
what the service runs (an async context: entered at start, left at shutdown,
where it delivers what it can).  ``PointStore`` is the store behind the
facade (InfluxDB): the API paces uploads by its backlog, asks it to settle
and whether a session lost points, deletes a session's series and checks
that it answers.  Tests and the facade depend on these, never on a sink's
attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self

from ingest.derive.point import Point


class PointSink(Protocol):
    def submit(self, points: Sequence[Point]) -> None:
        """Take points; never blocks (a full sink spools or drops, and counts)."""


class Sink(PointSink, Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


class PointStore(Sink, Protocol):
    @property
    def backlog_bytes(self) -> int:
        """Encoded points held in memory, not yet delivered."""

    async def wait_for_room(self, limit_bytes: int, timeout: float | None = None) -> bool:
        """Wait until the backlog is at most ``limit_bytes``; False when
        ``timeout`` seconds passed first."""

    async def flush(self, timeout: float | None = None) -> None:
        """Deliver everything submitted so far (raises when it cannot in time)."""

    def dropped_points(self, session: str) -> int:
        """Points tagged with this ``session`` that were dropped for good
        (refused, or past every bound): 0 means all of them were kept."""

    async def delete_series(self, tags: Mapping[str, str]) -> None:
        """Delete every series whose tags have these values (all of them)."""

    async def healthcheck(self) -> None:
        """Raise unless the store answers and takes writes."""
