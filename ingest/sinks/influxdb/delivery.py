"""Delivery: batches cut from the buffer, requests in flight, retries.

A dispatcher task cuts batches (``batch.lines`` / ``batch.bytes``, or
whatever waited ``batch.flush_interval``), from the spool first, then from
memory, and hands each to a sender task, at most ``batch.max_in_flight`` at
once.  A sender retries its batch on connection errors, timeouts, 408/429 and
5xx with the jittered backoff of ``ingest.backoff`` (``retry.base_delay`` up
to ``retry.max_delay``); while one is failing no new batch is sent, so during
an outage only those batches wait in memory and everything newer goes to the
buffer, then to disk, in order.  A batch whose delivery has failed for
``buffer.spill_after`` is written to the spool too (still retried from
memory, acknowledged on disk once stored).

400 (bad lines): InfluxDB 1.x has stored the good lines of a partial write
already; the bad ones it names are logged, counted in ``dropped_4xx`` and not
retried.  413: the batch is sent in halves.  401/403/404 stop sending
(``SinkAuthError`` / ``SinkError`` from ``flush()``) and keep the data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
import time
from collections.abc import Callable

from ingest.backoff import Backoff
from ingest.sinks.errors import SinkAuthError, SinkError
from ingest.sinks.influxdb.buffer import Buffer
from ingest.sinks.influxdb.client import InfluxClient, WriteError, parse_write_error
from ingest.sinks.influxdb.config import InfluxSinkConfig
from ingest.sinks.influxdb.ledger import Ledger
from ingest.sinks.influxdb.retry import Action, classify, retry_after
from ingest.sinks.spool import SpoolRecord

__all__ = ["Batch", "Delivery"]

log = logging.getLogger("liveprof.sinks.influx")

_GZIP_IN_THREAD = 256 << 10  # compress bodies above this off the event loop

Outcome = tuple[int, int] | None  # (stored, dropped), or None after a configuration error


@dataclasses.dataclass(slots=True)
class Batch:
    id: int
    lines: list[str]
    record: SpoolRecord | None = None  # from (or saved to) the spool: acknowledge it once settled
    body: bytes | None = None
    gzipped: bool = False


class Delivery:
    """Sends what ``buffer`` holds through ``client``; settles it in ``ledger``.
    ``changed`` is called whenever the gauges may have moved."""

    def __init__(self, config: InfluxSinkConfig, client: InfluxClient, buffer: Buffer, ledger: Ledger,
                 changed: Callable[[], None]) -> None:
        self.config = config
        self.client = client
        self.buffer = buffer
        self.ledger = ledger
        self.stats = ledger.stats
        self._changed = changed
        self.inflight: dict[int, Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 0
        self.healthy = True
        self.closing = False
        self.database_ok = False
        self.wake = asyncio.Event()
        self._down_since: float | None = None  # when the current outage began (monotonic)
        self._down_logged_at = 0.0

    # -- the dispatcher -----------------------------------------------------------

    async def run(self) -> None:
        """Cut and send batches until cancelled."""
        while True:
            self.wake.clear()
            while self._may_send():
                batch = self._next_batch()
                if batch is None:
                    break
                self.inflight[batch.id] = batch
                task = asyncio.create_task(self._send(batch), name=f"sink:influxdb:batch{batch.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._changed()
            moved = self.buffer.spill_late()
            if moved:
                self.stats.spilled_late += moved
                self._changed()
            timeout = None
            since = self.buffer.since
            if since is not None:
                due = []
                if self._may_send():
                    due.append(since + self.config.batch.flush_interval)
                if self.buffer.spool is not None:
                    due.append(since + self.config.buffer.spill_after)
                if due:
                    timeout = max(0.0, min(due) - self.buffer.clock())
            try:
                async with asyncio.timeout(timeout):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def stop(self) -> None:
        """Cancel the senders (the dispatcher is the sink's to cancel)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _may_send(self) -> bool:
        return (self.ledger.fatal is None and self.healthy
                and len(self.inflight) < self.config.batch.max_in_flight)

    def _next_batch(self) -> Batch | None:
        record = self.buffer.next_record()
        if record is not None:
            return self._new_batch(record.lines, record)
        if not self.buffer.batch_due(self.closing):
            return None
        return self._new_batch(self.buffer.pop_batch(), None)

    def _new_batch(self, lines: list[str], record: SpoolRecord | None) -> Batch:
        self._next_id += 1
        return Batch(id=self._next_id, lines=lines, record=record)

    # -- one batch ------------------------------------------------------------------

    async def _send(self, batch: Batch) -> None:
        outcome = await self._deliver(batch.lines, batch)
        if outcome is None:
            return  # configuration error: the batch stays in flight until close() spools it
        written, _ = outcome  # the dropped ones are settled where they were dropped
        self.stats.written += written
        if written:
            self.stats.batches += 1
        del self.inflight[batch.id]
        spool = self.buffer.spool
        if batch.record is not None and spool is not None:
            spool.ack(batch.record)
        self._changed()
        self.ledger.stored(written)
        self.wake.set()

    async def _deliver(self, lines: list[str], batch: Batch | None = None) -> Outcome:
        """Send ``lines`` under the retry rules until they are settled."""
        retry = self.config.retry
        backoff = Backoff(retry.base_delay, retry.max_delay)
        holder = batch if batch is not None else Batch(id=0, lines=lines)
        attempts = 0
        started = time.monotonic()
        while True:
            attempts += 1
            status: int | None = None
            text = ""
            try:
                status, text, headers = await self._post(holder)
            except SinkError as exc:  # no answer
                action, detail, wait = Action.RETRY, str(exc), None
            else:
                action = classify(status)
                detail = f"{status} {text.strip()[:300]}"
                wait = retry_after(headers.get("Retry-After"))
            if action is Action.OK:
                self._recovered()
                return len(lines), 0
            if action is Action.FATAL and self._creating(status):
                try:  # created when InfluxDB answers again; until then, like a 5xx
                    await self.client.ensure_database(self.config.database)
                    self.database_ok = True
                    continue
                except SinkError as exc:
                    if not exc.retryable:
                        raise
                    action, detail = Action.RETRY, str(exc)
            if action is Action.RETRY:
                if retry.max_attempts is not None and attempts >= retry.max_attempts:
                    log.error("giving up a batch of %d lines after %d attempts: %s",
                              len(lines), attempts, detail)
                    self.ledger.drop("retries", len(lines), lines)
                    self.healthy = True  # let the next batch make its own attempts
                    return 0, len(lines)
                delay = max(wait or 0.0, backoff.next())
                self._note_failure(detail)
                spool = self.buffer.spool
                if (batch is not None and batch.record is None and spool is not None
                        and time.monotonic() - started + delay >= self.config.buffer.spill_after):
                    batch.record = spool.persist(lines)  # a crash now replays it
                    self.stats.spilled_late += len(lines)
                    self._changed()
                log.debug("batch of %d lines: attempt %d failed (%s); next in %.2f s",
                          len(lines), attempts, detail, delay)
                self.healthy = False
                self.stats.retried += 1
                self.stats.last_error = detail
                await asyncio.sleep(delay)
                continue
            if action is Action.DROP:
                self._recovered()  # InfluxDB answers: the trouble is the data
                err = parse_write_error(text, lines)
                if not err.partial and len(lines) > 1 and len(set(err.bad_lines)) < len(set(lines)):
                    # nothing stored and not every line named bad (e.g. a type conflict inside
                    # a batch that opens a shard): find the bad lines by halves
                    log.warning("InfluxDB refused a whole batch of %d lines (%.300s); resending it in halves "
                                "to keep the good lines", len(lines), err.message)
                    return await self._halves(lines)
                return self._refused(lines, err)
            if action is Action.SPLIT:
                if len(lines) == 1:
                    log.error("InfluxDB refused a line as too large (%s); dropped: %.300s", detail, lines[0])
                    self.ledger.drop("4xx", 1, lines)
                    return 0, 1
                return await self._halves(lines)
            error = self.fatal_error(status, text)
            self.stats.last_error = str(error)
            log.error("%s; not retrying, keeping the data (memory, spool) until restarted with a fixed "
                      "configuration", error)
            self.ledger.fail(error)
            return None

    async def _halves(self, lines: list[str]) -> Outcome:
        half = len(lines) // 2
        first = await self._deliver(lines[:half])
        if first is None:
            return None
        second = await self._deliver(lines[half:])
        if second is None:
            return None
        return first[0] + second[0], first[1] + second[1]

    def _creating(self, status: int | None) -> bool:
        """A 404 (no such database) while the database is still to be created:
        transient (creating it failed transiently so far)."""
        return status == 404 and self.config.create_database and not self.database_ok

    async def _post(self, batch: Batch) -> tuple[int, str, dict[str, str]]:
        if batch.body is None:
            raw = ("\n".join(batch.lines) + "\n").encode("utf-8", "replace")  # lone surrogates
            if self.config.batch.gzip:
                level = self.config.batch.gzip_level
                if len(raw) > _GZIP_IN_THREAD:
                    batch.body = await asyncio.to_thread(gzip.compress, raw, level, mtime=0)
                else:
                    batch.body = gzip.compress(raw, level, mtime=0)
                batch.gzipped = True
            else:
                batch.body = raw
        self.stats.requests += 1
        return await self.client.write(
            batch.body, self.config.database, retention_policy=self.config.retention_policy,
            gzipped=batch.gzipped)

    def _refused(self, lines: list[str], err: WriteError) -> tuple[int, int]:
        """A 400: InfluxDB 1.x stored the good lines of a partial write already
        (it counts the rest: named unparsable lines plus ``dropped=N``, which
        names none: those are charged to every session of the batch, at most
        N each); otherwise it stored nothing."""
        if err.partial:
            refused = min(len(lines), len(err.bad_lines) + err.dropped)
            self.ledger.drop("4xx", refused, err.bad_lines)
            if err.dropped:
                named = set(err.bad_lines)
                self.ledger.charge([line for line in lines if line not in named], err.dropped)
        else:
            refused = len(lines)
            self.ledger.drop("4xx", refused, lines)
        sample = err.bad_lines[0] if err.bad_lines else lines[0] if lines else ""
        log.error("InfluxDB refused %d of %d lines: %.500s; first offending line: %.300s",
                  refused, len(lines), err.message, sample)
        self.stats.last_error = err.message[:300]
        return len(lines) - refused, refused

    def fatal_error(self, status: int | None, text: str) -> SinkError:
        if status in (401, 403):
            return SinkAuthError(self.client.auth_message(status, text), status=status)
        return SinkError(f"InfluxDB /write answered {status}: {text.strip()[:300]} "
                         f"(database {self.config.database!r})", status=status)

    # -- outages ---------------------------------------------------------------------

    def _note_failure(self, detail: str) -> None:
        """Log the first failure of an outage, then a line per
        ``down_log_interval`` with how long it lasts and what waits."""
        now = time.monotonic()
        if self.healthy or self._down_since is None:
            self._down_since = self._down_logged_at = now
            log.warning("InfluxDB write failed (%s); retrying with backoff, %s meanwhile", detail,
                        "buffering and spooling" if self.buffer.spool is not None else "buffering")
        elif now - self._down_logged_at >= self.config.down_log_interval:
            self._down_logged_at = now
            self._changed()
            s = self.stats
            log.warning("InfluxDB still down after %.0f s (%s): %d lines waiting (%d in flight, "
                        "%d in memory, %d on disk, %d bytes on disk); %d dropped so far",
                        now - self._down_since, detail, self.ledger.waiting,
                        s.in_flight_lines, s.buffered, s.spooled, s.spooled_bytes,
                        s.dropped_overflow + s.dropped_retries)

    def _recovered(self) -> None:
        if not self.healthy:
            down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
            log.info("InfluxDB writes succeed again after %.0f s; %d lines waiting to be sent",
                     down, self.ledger.waiting)
            self._down_since = None
            self.healthy = True
            self.wake.set()
