"""What the sink was given and what became of it.

Every line queued (submitted, or found in the spool at start) is *settled*
exactly once: stored by InfluxDB, or dropped for a counted reason.
``flush()`` waits for the settled count to reach the queued count it saw.
Drops are also counted per value of the line's ``session`` tag, so a caller
can ask whether one session lost points without diffing global counters that
every other stream moves.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from typing import Literal

from ingest.derive.point import unescape_key
from ingest.sinks.errors import SinkError
from ingest.sinks.influxdb.config import SinkStats

__all__ = ["Ledger", "session_of"]

DropReason = Literal["4xx", "overflow", "retries", "shutdown"]

SESSIONS_KEPT = 10_000  # sessions whose drop counts are remembered (the latest ones)


class Ledger:
    """Queued and settled line counts, flush waiters, drop counters.

    ``stats`` are the sink's counters (``dropped_<reason>`` move here).
    ``wake`` is called when a flush starts waiting, so the dispatcher cuts
    batches without waiting for them to fill."""

    def __init__(self, stats: SinkStats, wake: Callable[[], None]) -> None:
        self.stats = stats
        self.queued = 0  # lines queued so far: spooled by an earlier run, then submitted
        self.settled = 0  # lines stored or counted as dropped
        self.flush_target = 0  # lines up to this queued count are being flushed
        self.fatal: SinkError | None = None  # a configuration error: nothing settles any more
        self._wake = wake
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._session_drops: collections.OrderedDict[str, int] = collections.OrderedDict()

    @property
    def waiting(self) -> int:
        """Lines queued and not settled yet."""
        return self.queued - self.settled

    def stored(self, n: int) -> None:
        self.settled += n
        self.notify()

    def drop(self, reason: DropReason, count: int, lines: Iterable[str] = ()) -> None:
        """``count`` lines dropped for ``reason``; ``lines`` (all or some of
        them, when known) are charged to their sessions."""
        if count <= 0:
            return
        name = f"dropped_{reason}"
        setattr(self.stats, name, getattr(self.stats, name) + count)
        self.settled += count
        self.charge(lines)
        self.notify()

    def charge(self, lines: Iterable[str], limit: int | None = None) -> None:
        """Count lines against their sessions (at most ``limit`` per session)."""
        counts: dict[str, int] = {}
        for line in lines:
            session = session_of(line)
            if session is not None:
                counts[session] = counts.get(session, 0) + 1
        drops = self._session_drops
        for session, n in counts.items():
            drops[session] = drops.pop(session, 0) + (n if limit is None else min(n, limit))
        while len(drops) > SESSIONS_KEPT:
            drops.popitem(last=False)

    def dropped_points(self, session: str) -> int:
        return self._session_drops.get(session, 0)

    def fail(self, error: SinkError) -> None:
        """A configuration error: every flush waiting (and every later one) raises it."""
        self.fatal = error
        self.notify()

    async def wait_settled(self, target: int, timeout: float | None) -> None:
        """Until ``target`` lines are settled; ``TimeoutError`` after
        ``timeout``; the configuration error, if any."""
        if self.fatal is not None:
            raise self.fatal
        if self.settled >= target:
            return
        self.flush_target = max(self.flush_target, target)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._wake()
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            if not fut.done():
                fut.cancel()
            self._waiters = [(t, f) for t, f in self._waiters if f is not fut]

    def notify(self) -> None:
        keep = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if self.fatal is not None:
                fut.set_exception(self.fatal)
            elif self.settled >= target:
                fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep


def session_of(line: str) -> str | None:
    """The value of the ``session`` tag of a line-protocol line (as
    ``ingest.derive.point`` escapes it), or None.  Used for drops only: they
    are rare, so the hot path (encoding) carries nothing for this."""
    head_end = _head_end(line)
    start = 0
    while True:
        i = line.find(",session=", start, head_end)
        if i < 0:
            return None
        if i == 0 or line[i - 1] != "\\":  # not an escaped comma inside a name
            break
        start = i + 1
    value_start = i + len(",session=")
    j = value_start
    while True:
        j = line.find(",", j, head_end)
        if j < 0:
            j = head_end
            break
        if line[j - 1] != "\\":
            break
        j += 1
    return unescape_key(line[value_start:j])


def _head_end(line: str) -> int:
    """Where measurement and tags end: the first space not escaped."""
    j = line.find(" ")
    while j > 0 and line[j - 1] == "\\":
        j = line.find(" ", j + 1)
    return len(line) if j < 0 else j
