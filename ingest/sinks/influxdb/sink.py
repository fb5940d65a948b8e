# (over 400 lines: the sink's lifecycle, retractions and store API share its ledger and buffer)
"""The InfluxDB sink: batches line protocol to a 1.x ``/write`` and never makes
ingest wait.

Data path, oldest first::

    in flight (<= batch.max_in_flight requests)  <-  spool on disk  <-  memory buffer  <-  submit()

``submit()`` appends to the memory buffer and returns at once (``buffer.py``
says when lines move to disk or are dropped); ``delivery.py`` cuts batches
and retries them; ``ledger.py`` counts what became of every line.  Delivery
order is batch order; with ``batch.max_in_flight`` > 1 up to that many
consecutive batches may overlap in time.  At ``close()`` what could not be
delivered by the deadline goes to the spool (batches in flight before
everything else), to be replayed by the next sink on the same directory.

``InfluxSink`` is a ``PointStore`` (``ingest/sinks/base.py``): the service
facade paces uploads by ``backlog_bytes`` / ``wait_for_room``, asks
``dropped_points(session)`` and deletes a session with ``delete_series``.
No aiohttp error leaves a public method: they arrive as ``SinkError`` with
the URL masked (``client.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import aiohttp

from ingest.derive.point import Point, Retraction, lines
from ingest.sinks.errors import SinkAuthError, SinkError
from ingest.sinks.influxdb.buffer import Buffer
from ingest.sinks.influxdb.client import InfluxClient, Series
from ingest.sinks.influxdb.config import InfluxSinkConfig, SinkStats
from ingest.sinks.influxdb.delivery import Delivery
from ingest.sinks.influxdb.influxql import quote_ident, tags_match
from ingest.sinks.influxdb.ledger import Ledger
from ingest.sinks.influxdb.retry import Action, classify
from ingest.sinks.spool import Spool, fsync_close

if TYPE_CHECKING:
    from ingest.sinks.base import PointStore

__all__ = ["InfluxSink"]

log = logging.getLogger("liveprof.sinks.influx")


# retractions waiting at most (a stream's corrections rarely move more than a few
# points; a flood of them while InfluxDB is down must not grow without bound)
MAX_RETRACTIONS = 100_000

class InfluxSink:
    """``async with InfluxSink(config) as sink: sink.submit(lines)``.

    ``submit`` takes ``Point``s or line-protocol strings (ns precision, no
    newline) and never blocks; ``flush`` waits until what was submitted
    before it is settled (stored or counted as dropped); ``close`` delivers
    what it can by ``close_timeout`` and spools the rest.  Keyword arguments
    override settings of ``config`` (flat or nested keys alike).
    """

    def __init__(
        self,
        config: InfluxSinkConfig | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        **overrides: Any,
    ) -> None:
        if config is None:
            config = InfluxSinkConfig(**overrides)
        elif overrides:
            config = config.updated(overrides)
        self.config = config
        self.stats = SinkStats()
        self._session = session
        self._own_session = session is None
        self.client: InfluxClient | None = None
        self._ledger = Ledger(self.stats, self._wake)
        self._buffer = Buffer(config, self._ledger, None)
        self._delivery: Delivery | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        # points to delete, each once the lines queued before it are settled
        self._retractions: deque[tuple[int, Retraction]] = deque()
        self._retractor: asyncio.Task[None] | None = None
        self._retract_logged = False
        self._then_after = 0  # lines queued when a delete last wrote its point again
        self._last_submit: float | None = None  # (buffer clock) when lines were last submitted

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        if self._state != "new":
            raise SinkError("an InfluxSink starts once")
        cfg = self.config
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=cfg.batch.max_in_flight + 2))
        self.client = InfluxClient(
            self._session,
            cfg.url,
            user=cfg.user,
            password=cfg.password.get_secret_value() if cfg.password else None,
            token=cfg.token.get_secret_value() if cfg.token else None,
            auth_in_query=cfg.auth == "query",
            timeout=cfg.timeout,
        )
        if cfg.buffer.spool_dir is not None:
            loop = asyncio.get_running_loop()
            spool = Spool(
                cfg.buffer.spool_dir,
                max_bytes=cfg.buffer.spool_max_bytes,
                segment_bytes=cfg.buffer.spool_segment_bytes,
                seal=lambda fd: loop.run_in_executor(None, fsync_close, fd),  # fsync off the loop
            )
            self._buffer.spool = spool
            self._ledger.queued = spool.pending_lines  # replayed first, flushed like submitted lines
        self._delivery = Delivery(cfg, self.client, self._buffer, self._ledger, self._update_gauges)
        self._state = "open"
        try:
            if cfg.create_database:
                await self._create_database()
            if cfg.check_on_start:
                await self._check_start()
        except BaseException:
            await self._shutdown_resources()
            self._state = "closed"
            raise
        self._dispatcher = asyncio.create_task(self._delivery.run(), name="sink:influxdb")
        self._update_gauges()

    async def _create_database(self) -> None:
        assert self.client is not None and self._delivery is not None
        try:
            await self.client.ensure_database(self.config.database)
            self._delivery.database_ok = True
        except SinkError as exc:
            if not exc.retryable:
                raise
            log.warning("cannot create database %r yet: %s", self.config.database, exc)

    async def _check_start(self) -> None:
        assert self._delivery is not None
        try:
            await self.healthcheck()
        except SinkAuthError:
            raise
        except SinkError as exc:
            creating = exc.status == 404 and self.config.create_database and not self._delivery.database_ok
            if not (exc.retryable or creating):
                raise
            log.warning("%s; writing to the buffer%s until it answers", exc,
                        " and spool" if self._buffer.spool is not None else "")

    async def healthcheck(self) -> None:
        """/ping, then an empty write: raises ``SinkAuthError`` for refused
        credentials, ``SinkError`` for a missing database or an unreachable
        server (``retryable``)."""
        if self.client is None or self._delivery is None:
            raise SinkError("healthcheck() on an InfluxSink that was not started")
        await self.client.ping()
        status, text, _ = await self.client.write(b"", self.config.database,
                                                  retention_policy=self.config.retention_policy)
        if classify(status) is Action.FATAL:
            raise self._delivery.fatal_error(status, text)
        if status >= 500:
            raise SinkError(f"InfluxDB /write answered {status}: {text.strip()}", retryable=True,
                            status=status)

    async def close(self, timeout: float | None = None) -> None:
        """Deliver what was submitted by ``timeout`` (default ``close_timeout``),
        then save the rest to the spool (or count it dropped) and release
        everything.  Errors are logged, not raised; call ``flush()`` first to
        see them."""
        if self._state in ("closing", "closed"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        assert self._delivery is not None
        self._delivery.closing = True
        ledger = self._ledger
        timeout = self.config.close_timeout if timeout is None else timeout
        if ledger.fatal is None and timeout > 0:
            try:
                await ledger.wait_settled(ledger.queued, timeout)
            except TimeoutError:
                log.warning("closing with data not delivered: %d lines still waiting after %.1f s "
                            "(close_timeout); InfluxDB %s; %s", ledger.waiting, timeout,
                            f"last failed with: {self.stats.last_error}" if self.stats.last_error
                            else "did not answer in time",
                            "spooling them for the next start" if self._buffer.spool is not None
                            else "without a spool they are lost")
            except SinkError as exc:
                log.warning("closing with data not delivered: %s", exc)
        elif ledger.fatal is not None:
            log.warning("closing with data not delivered: %s", ledger.fatal)
        if self._retractor is not None:
            if ledger.fatal is None and timeout > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(self._retractor), timeout)
                except TimeoutError:
                    pass
            self._retractor.cancel()
            await asyncio.gather(self._retractor, return_exceptions=True)
            self.stats.retract_failed += len(self._retractions)
            self._retractions.clear()
            if ledger.fatal is None and timeout > 0 and ledger.waiting:  # the points written again
                try:
                    await ledger.wait_settled(ledger.queued, timeout)
                except (TimeoutError, SinkError):
                    pass
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        await self._delivery.stop()
        self._save_leftovers()
        await self._shutdown_resources()
        self._state = "closed"
        self._update_gauges()
        self._log_drop_totals()

    aclose = close

    def _log_drop_totals(self) -> None:
        s = self.stats
        total = s.dropped_overflow + s.dropped_4xx + s.dropped_retries + s.dropped_shutdown
        if total:
            log.error("InfluxDB sink closed: %d lines dropped in all (%d for the memory/disk bounds, "
                      "%d refused by InfluxDB, %d out of retries, %d at shutdown); %d written",
                      total, s.dropped_overflow, s.dropped_4xx, s.dropped_retries,
                      s.dropped_shutdown, s.written)

    def _save_leftovers(self) -> None:
        assert self._delivery is not None
        inflight = self._delivery.inflight
        unsent = [inflight[k] for k in sorted(inflight)]
        inflight.clear()
        from_memory = [b.lines for b in unsent if b.record is None]
        rest = self._buffer.take_all()
        spool = self._buffer.spool
        if spool is not None:
            spool.prepend(from_memory)  # older than anything on disk
            for chunk in self._buffer.chunks(rest):
                self._buffer.spool_drops(spool.append(chunk))
            saved = sum(map(len, from_memory)) + len(rest)
            if saved:
                log.info("spooled %d undelivered lines to %s for the next start", saved, spool.directory)
        else:
            lost = [line for lines in from_memory for line in lines] + rest
            if lost:
                self._ledger.drop("shutdown", len(lost), lost)
                log.error("closing without a spool: %d undelivered lines dropped", len(lost))

    async def _shutdown_resources(self) -> None:
        if self._buffer.spool is not None:
            self._buffer.spool.close()
        if self._own_session and self._session is not None:
            await self._session.close()

    def _wake(self) -> None:
        if self._delivery is not None:
            self._delivery.wake.set()

    # -- ingest side -----------------------------------------------------------

    def submit(self, items: Iterable[Point | str]) -> None:
        """Queue points or lines; returns at once.  Past ``buffer.memory_max_bytes``
        the oldest buffered lines go to the spool (or are dropped, counted)."""
        if self._state != "open":
            raise SinkError(f"submit() on an InfluxSink that is {self._state}, not open")
        self._enqueue(items)

    def _enqueue(self, items: Iterable[Point | str]) -> None:
        rendered = lines(items if isinstance(items, list) else list(items))  # in one compiled call
        if not rendered:
            return
        self.stats.submitted += len(rendered)
        self._ledger.queued += len(rendered)
        buffer = self._buffer
        waiting = buffer.since is not None  # (the dispatcher's timer already runs for it)
        buffer.add(rendered)
        self._update_gauges()
        # When the next submit, as far apart as the last two, would come after the
        # oldest line's interval, this one sends the batch: a live stream's request
        # goes with a chunk's work, not a wake-up for the dispatcher's timer (kept,
        # for a stream that stops).  The dispatcher is woken only when a batch may start.
        now = buffer.clock()
        gap = 0.0 if self._last_submit is None else now - self._last_submit
        self._last_submit = now
        since = buffer.since
        interval = self.config.batch.flush_interval
        if since is not None and now - since + gap >= interval:
            buffer.send_now = True
        if not waiting or buffer.send_now or buffer.full():
            self._wake()

    def retract(self, items: Sequence[Retraction]) -> None:
        """Delete points written before (a live correction moved them:
        docs/live.md), each once every line submitted before this call is
        settled; returns at once.  At most ``MAX_RETRACTIONS`` wait; more are
        counted in ``retract_failed`` and left in place."""
        if self._state != "open" or not items:
            return
        room = MAX_RETRACTIONS - len(self._retractions)
        if room < len(items):
            self.stats.retract_failed += len(items) - max(room, 0)
            items = items[:max(room, 0)]
        after = self._ledger.queued
        self._retractions.extend((after, r) for r in items)
        if self._retractor is None or self._retractor.done():
            self._retractor = asyncio.create_task(self._retract_all(),
                                                  name="sink:influxdb:retract")

    async def _retract_all(self) -> None:
        assert self.client is not None
        pending = self._retractions
        while pending:
            after, r = pending[0]
            try:
                # (and after the points earlier deletes wrote again)
                await self._ledger.wait_settled(max(after, self._then_after), None)
                # (settled is a count: batches finish out of order, so lines queued
                # before ``after`` may still be in a batch in flight: wait for those)
                delivery = self._delivery
                if delivery is not None:
                    pending_ids = set(delivery.inflight)
                    while pending_ids & delivery.inflight.keys():  # noqa: ASYNC110  # (rare: a correction; no event for one batch)
                        await asyncio.sleep(0.02)
                await self.client.query(
                    f"DELETE FROM {quote_ident(r.measurement)} WHERE {tags_match(r.tags)} "
                    f"AND time = {int(r.time)}", database=self.config.database)
                self.stats.retracted += 1
                if r.then is not None and self._state in ("open", "closing"):
                    self._enqueue([r.then])  # (a point that lost a field: written anew)
                    self._then_after = self._ledger.queued
            except (SinkError, ValueError) as exc:
                self.stats.retract_failed += 1
                if not self._retract_logged:
                    self._retract_logged = True
                    log.warning("could not delete a point a live correction moved (%s %s at "
                                "%d): %s; it stays (counted in retract_failed)",
                                r.measurement, r.tags, r.time, exc)
            pending.popleft()

    async def write(self, items: Iterable[Point | str]) -> None:
        """``submit`` for callers that want the async sink interface."""
        self.submit(items)

    async def flush(self, timeout: float | None = None) -> None:
        """Send what was submitted so far without waiting for full batches and
        wait until it is settled (stored, or counted as dropped).  Raises the
        sink's configuration error (``SinkAuthError``, ...), and
        ``TimeoutError`` after ``timeout`` (InfluxDB down: the data stays queued)."""
        if self._state != "open":
            raise SinkError("flush() on an InfluxSink that is not open")
        await self._ledger.wait_settled(self._ledger.queued, timeout)

    # -- the store (PointStore) --------------------------------------------------

    @property
    def backlog_bytes(self) -> int:
        """Line-protocol bytes in the memory buffer (not the batches being
        sent, nor what waits on disk)."""
        return self._buffer.mem_bytes

    async def wait_for_room(self, limit_bytes: int, timeout: float | None = None) -> bool:
        """Until ``backlog_bytes`` is at most ``limit_bytes``: woken by each
        shrink of the buffer (a batch cut, a spill to disk, a drop); False
        when ``timeout`` seconds passed first."""
        return await self._buffer.wait_for_room(limit_bytes, timeout)

    def dropped_points(self, session: str) -> int:
        """Lines tagged ``session=<session>`` dropped for good (refused by
        InfluxDB, over the memory/disk bounds, out of retries, lost at close
        without a spool).  Remembered for the last 10,000 sessions that lost
        any.  A partial write that refuses N lines without naming them (a
        type conflict) charges up to N to each session of its batch: the
        count may be high, never 0 when one was lost."""
        return self._ledger.dropped_points(session)

    async def delete_series(self, tags: Mapping[str, str]) -> None:
        """``DROP SERIES WHERE "k" = 'v' AND ...`` on the sink's database."""
        await self.query(f"DROP SERIES WHERE {tags_match(tags)}")

    async def query(self, influxql: str, *, database: str | None = None) -> list[Series]:
        """Run InfluxQL on the sink's database (or ``database``)."""
        if self.client is None:
            raise SinkError("query() on an InfluxSink that was not started")
        return await self.client.query(influxql, database=database or self.config.database)

    async def ensure_database(self) -> None:
        """CREATE DATABASE for the configured database (idempotent)."""
        if self.client is None:
            raise SinkError("ensure_database() on an InfluxSink that was not started")
        await self.client.ensure_database(self.config.database)

    # -- gauges --------------------------------------------------------------------------

    def _update_gauges(self) -> None:
        s = self.stats
        s.buffered = len(self._buffer)
        s.buffered_bytes = self._buffer.mem_bytes
        if self._delivery is not None:
            inflight = self._delivery.inflight
            s.in_flight = len(inflight)
            s.in_flight_lines = sum(len(b.lines) for b in inflight.values())
        spool = self._buffer.spool
        if spool is not None:
            s.spooled = spool.pending_lines
            s.spooled_bytes = spool.pending_bytes


if TYPE_CHECKING:
    def _is_a_point_store(sink: InfluxSink) -> PointStore:
        return sink  # mypy holds InfluxSink to the contract
