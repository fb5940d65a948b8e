"""The InfluxDB sink: batches line protocol to a 1.x ``/write`` and never makes
ingest wait.

Data path, oldest first::

    in flight (<= max_in_flight requests)  <-  spool on disk  <-  memory buffer  <-  submit()

``submit()`` appends to the memory buffer and returns at once.  When the buffer
holds more than ``memory_max_bytes``, its oldest lines move to the spool (or,
without a spool, are dropped and counted); so does everything in it once its
oldest line has waited ``spill_after`` seconds, and a batch whose delivery has
failed for that long is written to the spool too (still retried from memory,
acknowledged on disk once stored): a crash during an outage loses at most
about ``spill_after`` seconds of data.  A dispatcher task cuts batches
(``batch_lines`` / ``batch_bytes``, or whatever waited ``flush_interval``),
from the spool first, then from memory, and hands each to a sender task.

A sender retries its batch on connection errors, timeouts, 408/429 and 5xx
with jittered exponential backoff; while one is failing no new batch is sent,
so during an outage only those batches wait in memory and everything newer
goes to the buffer, then to disk, in order.  400 (bad lines): InfluxDB 1.x has
stored the good lines of a partial write already; the bad ones it names are
logged, counted in ``dropped_4xx`` and not retried.  401/403/404 stop sending
(``SinkAuthError`` / ``SinkError`` from ``flush()``) and keep the data.

Delivery order is batch order; with ``max_in_flight`` > 1 up to that many
consecutive batches may overlap in time.  At ``close()`` what could not be
delivered by the deadline goes to the spool (batches in flight before
everything else), to be replayed by the next sink on the same directory.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gzip
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import aiohttp

from ingest.sinks._retry import Action, Backoff, classify, retry_after
from ingest.sinks.errors import SinkAuthError, SinkError
from ingest.sinks.influx_api import InfluxClient, Series, WriteError, parse_write_error
from ingest.sinks.influx_config import InfluxSinkConfig, SinkStats
from ingest.sinks.spool import Spool, SpoolRecord, fsync_close

if TYPE_CHECKING:
    from ingest.derive.point import Point

log = logging.getLogger("liveprof.sinks.influx")

_GZIP_IN_THREAD = 256 << 10  # compress bodies above this off the event loop


@dataclasses.dataclass(slots=True)
class _Batch:
    id: int
    lines: list[str]
    record: SpoolRecord | None = None  # from the spool: acknowledge it once settled
    body: bytes | None = None
    gzipped: bool = False


class InfluxSink:
    """``async with InfluxSink(config) as sink: sink.submit(lines)``.

    ``submit`` takes ``Point``s or line-protocol strings (ns precision, no
    newline) and never blocks; ``flush`` waits until what was submitted
    before it is settled (stored or counted as dropped); ``close`` delivers
    what it can by ``close_timeout`` and spools the rest.
    """

    def __init__(
        self,
        config: InfluxSinkConfig | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        **overrides,
    ) -> None:
        if config is None:
            config = InfluxSinkConfig(**overrides)
        elif overrides:
            config = InfluxSinkConfig.model_validate({**config.model_dump(), **overrides})
        self.config = config
        self.stats = SinkStats()
        self._session = session
        self._own_session = session is None
        self.client: InfluxClient | None = None
        self._mem: collections.deque[str] = collections.deque()
        self._mem_bytes = 0
        self._mem_since: float | None = None  # when the oldest buffered line arrived
        self._spool: Spool | None = None
        self._inflight: dict[int, _Batch] = {}
        self._tasks: set[asyncio.Task] = set()
        self._next_id = 0
        self._healthy = True
        self._fatal: SinkError | None = None
        self._flush_target = 0  # lines up to this submit count are being flushed
        self._seq = 0  # lines queued so far: spooled by an earlier run, then submitted
        self._settled = 0  # lines stored or counted as dropped
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._overflow_logged_at = 0.0
        self._overflow_unlogged = 0  # lines dropped for the bounds since the last log line
        self._down_since: float | None = None  # when the current outage began (monotonic)
        self._down_logged_at = 0.0
        self._database_ok = False

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> InfluxSink:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        if self._state != "new":
            raise SinkError("an InfluxSink starts once")
        cfg = self.config
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=cfg.max_in_flight + 2))
        self.client = InfluxClient(
            self._session,
            cfg.url,
            user=cfg.user,
            password=cfg.password.get_secret_value() if cfg.password else None,
            token=cfg.token.get_secret_value() if cfg.token else None,
            auth_in_query=cfg.auth == "query",
            timeout=cfg.timeout,
        )
        if cfg.spool_dir is not None:
            loop = asyncio.get_running_loop()
            self._spool = Spool(
                cfg.spool_dir,
                max_bytes=cfg.spool_max_bytes,
                segment_bytes=cfg.spool_segment_bytes,
                seal=lambda fd: loop.run_in_executor(None, fsync_close, fd),  # fsync off the loop
            )
            self._seq = self._spool.pending_lines  # replayed first, flushed like submitted lines
        self._wake = asyncio.Event()
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
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="sink:influxdb")
        self._update_gauges()

    async def _create_database(self) -> None:
        assert self.client is not None
        try:
            await self.client.ensure_database(self.config.database)
            self._database_ok = True
        except SinkError as exc:
            if not exc.retryable:
                raise
            log.warning("cannot create database %r yet: %s", self.config.database, exc)

    async def _check_start(self) -> None:
        try:
            await self.healthcheck()
        except SinkAuthError:
            raise
        except SinkError as exc:
            if not (exc.retryable or self._creating(exc.status)):
                raise
            log.warning("%s; writing to the buffer%s until it answers", exc,
                        " and spool" if self._spool is not None else "")

    def _creating(self, status: int | None) -> bool:
        """A 404 (no such database) while the database is still to be created:
        transient (creating it failed transiently so far)."""
        return status == 404 and self.config.create_database and not self._database_ok

    async def healthcheck(self) -> None:
        """/ping, then an empty write: raises ``SinkAuthError`` for refused
        credentials, ``SinkError`` for a missing database or an unreachable
        server (``retryable``)."""
        assert self.client is not None, "start() first"
        await self.client.ping()
        try:
            status, text, _ = await self.client.write(b"", self.config.database,
                                                      retention_policy=self.config.retention_policy)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkError(f"InfluxDB at {self.config.url} is unreachable: {self._redact(exc)}",
                            retryable=True) from exc
        if classify(status) is Action.FATAL:
            raise self._fatal_error(status, text)
        if status >= 500:
            raise SinkError(f"InfluxDB /write answered {status}: {text.strip()}", retryable=True, status=status)

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
        timeout = self.config.close_timeout if timeout is None else timeout
        if self._fatal is None and timeout > 0:
            try:
                await self._wait_settled(self._seq, timeout)
            except TimeoutError:
                log.warning("closing with data not delivered: %d lines still waiting after %.1f s "
                            "(close_timeout); InfluxDB %s; %s", self._seq - self._settled, timeout,
                            f"last failed with: {self.stats.last_error}" if self.stats.last_error
                            else "did not answer in time",
                            "spooling them for the next start" if self._spool is not None
                            else "without a spool they are lost")
            except SinkError as exc:
                log.warning("closing with data not delivered: %s", exc)
        elif self._fatal is not None:
            log.warning("closing with data not delivered: %s", self._fatal)
        for task in [self._dispatcher, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._dispatcher, *self._tasks] if t is not None),
                             return_exceptions=True)
        self._save_leftovers()
        await self._shutdown_resources()
        self._state = "closed"
        self._update_gauges()
        self._log_drop_totals()

    def _log_drop_totals(self) -> None:
        s = self.stats
        total = s.dropped_overflow + s.dropped_4xx + s.dropped_retries + s.dropped_shutdown
        if total:
            log.error("InfluxDB sink closed: %d lines dropped in all (%d for the memory/disk bounds, "
                      "%d refused by InfluxDB, %d out of retries, %d at shutdown); %d written",
                      total, s.dropped_overflow, s.dropped_4xx, s.dropped_retries,
                      s.dropped_shutdown, s.written)

    aclose = close

    def _save_leftovers(self) -> None:
        unsent = [self._inflight[k] for k in sorted(self._inflight)]
        self._inflight.clear()
        from_memory = [b.lines for b in unsent if b.record is None]
        rest = list(self._mem)
        self._mem.clear()
        self._mem_bytes = 0
        if self._spool is not None:
            self._spool.prepend(from_memory)  # older than anything on disk
            for chunk in self._chunks(rest):
                self._count_spool_drop(self._spool.append(chunk))
            saved = sum(map(len, from_memory)) + len(rest)
            if saved:
                log.info("spooled %d undelivered lines to %s for the next start", saved, self._spool.directory)
        else:
            lost = sum(map(len, from_memory)) + len(rest)
            if lost:
                self.stats.dropped_shutdown += lost
                self._settled += lost
                log.error("closing without a spool: %d undelivered lines dropped", lost)

    async def _shutdown_resources(self) -> None:
        if self._spool is not None:
            self._spool.close()
        if self._own_session and self._session is not None:
            await self._session.close()

    # -- ingest side -----------------------------------------------------------

    def submit(self, items: Iterable[Point | str]) -> None:
        """Queue points or lines; returns at once.  Past ``memory_max_bytes``
        the oldest buffered lines go to the spool (or are dropped, counted)."""
        if self._state != "open":
            raise SinkError(f"submit() on an InfluxSink that is {self._state}, not open")
        lines = [item if isinstance(item, str) else item.to_line() for item in items]
        if not lines:
            return
        n = len(lines)
        self._mem.extend(lines)
        self._mem_bytes += sum(map(len, lines)) + n
        self.stats.submitted += n
        self._seq += n
        if self._mem_since is None:
            self._mem_since = time.monotonic()
        if self._mem_bytes > self.config.memory_max_bytes:
            self._spill()
        self._update_gauges()
        if self._wake is not None:
            self._wake.set()

    async def write(self, items: Iterable[Point | str]) -> None:
        """``submit`` for callers that want the async sink interface."""
        self.submit(items)

    def _spill(self) -> None:
        limit = self.config.memory_max_bytes
        if self._spool is None:
            dropped = 0
            while self._mem and self._mem_bytes > limit:
                line = self._mem.popleft()
                self._mem_bytes -= len(line) + 1
                dropped += 1
            self.stats.dropped_overflow += dropped
            self._settled += dropped
            self._log_overflow("memory buffer full (memory_max_bytes) and no spool", dropped)
            self._notify_settled()
        else:
            while self._mem and self._mem_bytes > limit:
                chunk = self._pop_batch()
                self._count_spool_drop(self._spool.append(chunk))
        if not self._mem:
            self._mem_since = None

    def _count_spool_drop(self, dropped) -> None:
        if dropped:
            self.stats.dropped_overflow += dropped.lines
            self._settled += dropped.lines
            self._log_overflow(f"spool over spool_max_bytes ({self.config.spool_max_bytes} bytes)",
                               dropped.lines)
            self._notify_settled()

    def _log_overflow(self, what: str, lines: int) -> None:
        """At most one line per 5 s, counting every drop since the last one
        and the running total (the total at close comes from ``close``)."""
        self._overflow_unlogged += lines
        now = time.monotonic()
        if now - self._overflow_logged_at >= 5.0:
            self._overflow_logged_at = now
            log.error("%s: dropped the oldest %d lines since the last report, %d in all so far",
                      what, self._overflow_unlogged, self.stats.dropped_overflow)
            self._overflow_unlogged = 0

    def _spill_late(self) -> None:
        """With a spool, move the memory buffer to disk once its oldest line has
        waited ``spill_after`` (InfluxDB slow or down): what a crash can lose."""
        if self._spool is None or self._mem_since is None or not self._mem:
            return
        if time.monotonic() - self._mem_since < self.config.spill_after:
            return
        n = len(self._mem)
        while self._mem:
            self._count_spool_drop(self._spool.append(self._pop_batch()))
        self._mem_since = None
        self.stats.spilled_late += n
        self._update_gauges()

    def _pop_batch(self) -> list[str]:
        """The oldest lines of the memory buffer, at most one batch."""
        mem = self._mem
        max_lines, max_bytes = self.config.batch_lines, self.config.batch_bytes
        out: list[str] = []
        size = 0
        while mem and len(out) < max_lines:
            line = mem[0]
            if out and size + len(line) + 1 > max_bytes:
                break
            mem.popleft()
            out.append(line)
            size += len(line) + 1
        self._mem_bytes -= size
        return out

    def _chunks(self, lines: list[str]):
        cfg = self.config
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and (len(chunk) >= cfg.batch_lines or size + len(line) + 1 > cfg.batch_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            yield chunk

    # -- flush ----------------------------------------------------------------

    async def flush(self, timeout: float | None = None) -> None:
        """Send what was submitted so far without waiting for full batches and
        wait until it is settled (stored, or counted as dropped).  Raises the
        sink's configuration error (``SinkAuthError``, ...), and
        ``TimeoutError`` after ``timeout`` (InfluxDB down: the data stays queued)."""
        if self._state != "open":
            raise SinkError("flush() on an InfluxSink that is not open")
        await self._wait_settled(self._seq, timeout)

    async def _wait_settled(self, target: int, timeout: float | None) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._settled >= target:
            return
        self._flush_target = max(self._flush_target, target)
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        assert self._wake is not None
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            if not fut.done():
                fut.cancel()
            self._waiters = [(t, f) for t, f in self._waiters if f is not fut]

    def _notify_settled(self) -> None:
        keep = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if self._fatal is not None:
                fut.set_exception(self._fatal)
            elif self._settled >= target:
                fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    # -- dispatch -----------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            while self._may_send():
                batch = self._next_batch()
                if batch is None:
                    break
                self._inflight[batch.id] = batch
                task = asyncio.create_task(self._send(batch), name=f"sink:influxdb:batch{batch.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._update_gauges()
            self._spill_late()
            timeout = None
            if self._mem_since is not None:
                due = []
                if self._may_send():
                    due.append(self._mem_since + self.config.flush_interval)
                if self._spool is not None:
                    due.append(self._mem_since + self.config.spill_after)
                if due:
                    timeout = max(0.0, min(due) - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _may_send(self) -> bool:
        return self._fatal is None and self._healthy and len(self._inflight) < self.config.max_in_flight

    def _next_batch(self) -> _Batch | None:
        if self._spool is not None and self._spool.has_unread():
            record = self._spool.read()
            if record is not None:
                return self._new_batch(record.lines, record)
        if not self._mem:
            return None
        cfg = self.config
        due = (
            len(self._mem) >= cfg.batch_lines
            or self._mem_bytes >= cfg.batch_bytes
            or self._flush_target > self._seq - len(self._mem)  # a flush wants buffered lines
            or self._state == "closing"
            or (self._mem_since is not None and time.monotonic() - self._mem_since >= cfg.flush_interval)
        )
        if not due:
            return None
        lines = self._pop_batch()
        if not self._mem:
            self._mem_since = None
        return self._new_batch(lines, None)

    def _new_batch(self, lines: list[str], record: SpoolRecord | None) -> _Batch:
        self._next_id += 1
        return _Batch(id=self._next_id, lines=lines, record=record)

    # -- sending ---------------------------------------------------------------------

    async def _send(self, batch: _Batch) -> None:
        outcome = await self._deliver(batch.lines, batch)
        if outcome is None:
            return  # configuration error: the batch stays in flight until close() spools it
        written, dropped = outcome
        self.stats.written += written
        if written:
            self.stats.batches += 1
        self._settled += written + dropped
        del self._inflight[batch.id]
        if batch.record is not None and self._spool is not None:
            self._spool.ack(batch.record)
        self._update_gauges()
        self._notify_settled()
        assert self._wake is not None
        self._wake.set()

    async def _deliver(self, lines: list[str], batch: _Batch | None = None) -> tuple[int, int] | None:
        """Send ``lines`` under the retry rules until they are settled: returns
        (stored, dropped), or None after a configuration error."""
        backoff = Backoff(self.config.retry_base_delay, self.config.retry_max_delay)
        holder = batch if batch is not None else _Batch(id=0, lines=lines)
        attempts = 0
        started = time.monotonic()
        while True:
            attempts += 1
            status: int | None = None
            try:
                status, text, headers = await self._post(holder)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                action, detail, wait = Action.RETRY, self._redact(exc), None
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
                    self._database_ok = True
                    continue
                except SinkError as exc:
                    if not exc.retryable:
                        raise
                    action, detail = Action.RETRY, str(exc)
            if action is Action.RETRY:
                limit = self.config.retry_max_attempts
                if limit is not None and attempts >= limit:
                    log.error("giving up a batch of %d lines after %d attempts: %s", len(lines), attempts, detail)
                    self.stats.dropped_retries += len(lines)
                    self._healthy = True  # let the next batch make its own attempts
                    return 0, len(lines)
                delay = max(wait or 0.0, backoff.next_delay())
                self._note_failure(detail)
                if (batch is not None and batch.record is None and self._spool is not None
                        and time.monotonic() - started + delay >= self.config.spill_after):
                    batch.record = self._spool.persist(lines)  # a crash now replays it
                    self.stats.spilled_late += len(lines)
                    self._update_gauges()
                log.debug("batch of %d lines: attempt %d failed (%s); next in %.2f s",
                          len(lines), attempts, detail, delay)
                self._healthy = False
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
                    self.stats.dropped_4xx += 1
                    return 0, 1
                return await self._halves(lines)
            self._fatal = self._fatal_error(status, text)
            self.stats.last_error = str(self._fatal)
            log.error("%s; not retrying, keeping the data (memory, spool) until restarted with a fixed "
                      "configuration", self._fatal)
            self._notify_settled()
            return None

    async def _halves(self, lines: list[str]) -> tuple[int, int] | None:
        half = len(lines) // 2
        first = await self._deliver(lines[:half])
        if first is None:
            return None
        second = await self._deliver(lines[half:])
        if second is None:
            return None
        return first[0] + second[0], first[1] + second[1]

    def _note_failure(self, detail: str) -> None:
        """Log the first failure of an outage, then a line per
        ``down_log_interval`` with how long it lasts and what waits."""
        now = time.monotonic()
        if self._healthy or self._down_since is None:
            self._down_since = self._down_logged_at = now
            log.warning("InfluxDB write failed (%s); retrying with backoff, %s meanwhile", detail,
                        "buffering and spooling" if self._spool is not None else "buffering")
        elif now - self._down_logged_at >= self.config.down_log_interval:
            self._down_logged_at = now
            self._update_gauges()
            s = self.stats
            log.warning("InfluxDB still down after %.0f s (%s): %d lines waiting (%d in flight, "
                        "%d in memory, %d on disk, %d bytes on disk); %d dropped so far",
                        now - self._down_since, detail, self._seq - self._settled,
                        s.in_flight_lines, s.buffered, s.spooled, s.spooled_bytes,
                        s.dropped_overflow + s.dropped_retries)

    def _recovered(self) -> None:
        if not self._healthy:
            down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
            log.info("InfluxDB writes succeed again after %.0f s; %d lines waiting to be sent",
                     down, self._seq - self._settled)
            self._down_since = None
            self._healthy = True
            if self._wake is not None:
                self._wake.set()

    async def _post(self, batch: _Batch) -> tuple[int, str, dict]:
        assert self.client is not None
        if batch.body is None:
            raw = ("\n".join(batch.lines) + "\n").encode("utf-8", "replace")  # lone surrogates
            if self.config.gzip:
                level = self.config.gzip_level
                if len(raw) > _GZIP_IN_THREAD:
                    batch.body = await asyncio.to_thread(gzip.compress, raw, level, mtime=0)
                else:
                    batch.body = gzip.compress(raw, level, mtime=0)
                batch.gzipped = True
            else:
                batch.body = raw
        self.stats.requests += 1
        return await self.client.write(
            batch.body, self.config.database, retention_policy=self.config.retention_policy, gzipped=batch.gzipped
        )

    def _refused(self, lines: list[str], err: WriteError) -> tuple[int, int]:
        """A 400: InfluxDB 1.x stored the good lines of a partial write already
        (it counts the rest: named unparsable lines plus ``dropped=N``);
        otherwise it stored nothing."""
        if err.partial:
            refused = min(len(lines), len(err.bad_lines) + err.dropped)
        else:
            refused = len(lines)
        sample = err.bad_lines[0] if err.bad_lines else lines[0] if lines else ""
        log.error("InfluxDB refused %d of %d lines: %.500s; first offending line: %.300s",
                  refused, len(lines), err.message, sample)
        self.stats.dropped_4xx += refused
        self.stats.last_error = err.message[:300]
        return len(lines) - refused, refused

    def _fatal_error(self, status: int | None, text: str) -> SinkError:
        assert self.client is not None
        if status in (401, 403):
            return SinkAuthError(self.client.auth_message(status, text), status=status)
        return SinkError(f"InfluxDB /write answered {status}: {text.strip()[:300]} "
                         f"(database {self.config.database!r})", status=status)

    def _redact(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return self.client.redact(text) if self.client is not None else text

    # -- queries -----------------------------------------------------------------------

    async def query(self, influxql: str, *, database: str | None = None) -> list[Series]:
        """Run InfluxQL on the sink's database (or ``database``)."""
        assert self.client is not None, "start() first"
        return await self.client.query(influxql, database=database or self.config.database)

    async def ensure_database(self) -> None:
        """CREATE DATABASE for the configured database (idempotent)."""
        assert self.client is not None, "start() first"
        await self.client.ensure_database(self.config.database)

    # -- gauges --------------------------------------------------------------------------

    def _update_gauges(self) -> None:
        s = self.stats
        s.buffered = len(self._mem)
        s.buffered_bytes = self._mem_bytes
        s.in_flight = len(self._inflight)
        s.in_flight_lines = sum(len(b.lines) for b in self._inflight.values())
        if self._spool is not None:
            s.spooled = self._spool.pending_lines
            s.spooled_bytes = self._spool.pending_bytes

    # -- TEMP (facade branch): the PointStore contract, done for real on the sinks branch --

    @property
    def backlog_bytes(self) -> int:
        return self._mem_bytes

    async def wait_for_room(self, limit_bytes: int, timeout: float | None = None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._mem_bytes > limit_bytes:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def dropped_points(self, session: str) -> int:
        s = self.stats
        return s.dropped_4xx + s.dropped_overflow + s.dropped_retries

    async def delete_series(self, tags) -> None:
        from .influx_api import quote_ident, quote_string
        where = " AND ".join(f"{quote_ident(k)} = {quote_string(v)}" for k, v in tags.items())
        await self.query(f"DROP SERIES WHERE {where}")
