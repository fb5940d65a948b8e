"""``liveprof serve``: every configured source at once, into InfluxDB.

Order of things: open the sinks (InfluxDB, which resumes its spool; the MQTT
alert sink when configured, which never blocks ingest), apply the
retention/rollup scheme (``influx setup``, idempotent; in the background,
retried until InfluxDB answers), start one named task per source, all feeding
one ``StreamRegistry``; start the HTTP API when configured, handing it the
service as a ``ServiceFacade`` (ingest/facade.py), all it may know.  On
shutdown (SIGINT/SIGTERM, or ``stop()``) cancel the sources (each ends its
open streams, so their last points are made and can still raise alerts), then
close the sinks in reverse order: InfluxDB delivers what it can by its
deadline and spools the rest.

A source that fails is restarted after a jittered delay; the others never
notice.  A fault that waiting cannot mend (``PermanentSourceError``, or an
``OSError`` such as permission denied: ingest/errors.py) stops that source
with one log line instead.  A source that finishes (a file imported) just
ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .backoff import Backoff
from .config import Settings
from .errors import PERMANENT_ERRNOS, PermanentSourceError, SourceError
from .facade import Readiness, ServiceNotReady, SourceStatus, StoreError
from .sinks import InfluxSink, SinkStats, quote_ident, quote_string
from .sinks.mqtt import MqttAlertSink, MqttAlertStats
from .sources.base import Source
from .sources.fifo import FifoSource
from .sources.file import FileSource
from .sources.http_upload import UploadSource, UploadStream
from .sources.monitor_tcp import MonitorTcpConfig, MonitorTcpSource
from .sources.monitor_udp import MonitorUdpSource
from .sources.socket import SocketConfig, SocketSource
from .sources.stdin import StdinSource
from .streams import StreamRecord, StreamRegistry
from .urls import mask_url

if TYPE_CHECKING:
    from aiohttp.web import AppRunner

    from .influx_setup import SetupReport

log = logging.getLogger("liveprof.service")


# sources the HTTP API may add at run time: kind -> (config model, source class)
CONNECTION_KINDS: dict[str, tuple[type[BaseModel], Any]] = {
    "monitor": (MonitorTcpConfig, MonitorTcpSource),
    "socket": (SocketConfig, SocketSource),
}


def build_sources(settings: Settings) -> list[Source]:
    sources: list[Source] = [MonitorTcpSource(m) for m in settings.monitors]
    if settings.monitor_udp is not None:
        sources.append(MonitorUdpSource(settings.monitor_udp))
    sources += [SocketSource(c) for c in settings.sockets]
    sources += [FifoSource(c) for c in settings.fifos]
    sources += [FileSource(c) for c in settings.files]
    if settings.stdin is not None:
        sources.append(StdinSource(settings.stdin))
    return sources


# The cyclic collector while serving (``_tune_gc``).  Its default (a young
# collection every 700 new container objects) runs some 50 times a second at
# LiveSim's 0.4 MB/s, and a live pipeline keeps ten seconds of events and
# points for corrections (docs/live.md): each collection walked them again and
# again, a quarter of what a MB of live eventlog cost.  Deriving makes no
# cycles per event or batch (reference counting frees it all; ``import``
# turns the collector off), so collections are made rarer, not stopped (the
# service's sockets, tasks and exceptions do make some), and what start-up
# built (modules, settings, sessions) is frozen: no full collection walks it.
GC_THRESHOLDS = (10_000, 10, 10)


def _tune_gc() -> tuple[int, int, int] | None:
    """Freeze what start-up made and space collections out; what to restore."""
    if not gc.isenabled():
        return None
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return before


def _restore_gc(before: tuple[int, int, int] | None) -> None:
    if before is not None:
        gc.set_threshold(*before)
        gc.unfreeze()


class Service:
    """The running service; also the ``ServiceFacade`` its HTTP API uses
    (the methods after ``run``'s helpers)."""

    SETUP_WAIT = 10.0   # seconds the sources wait for the retention/rollup setup at start

    def __init__(self, settings: Settings, extra_sinks: list | None = None):
        self.settings = settings
        self.extra_sinks = list(extra_sinks or [])
        self.sources = build_sources(settings)
        self.source_tasks: dict[int, asyncio.Task] = {}   # by id(source), while running
        self.registry: StreamRegistry | None = None
        self.uploads: UploadSource | None = None
        self.sink: InfluxSink | None = None
        self.alerts: MqttAlertSink | None = None
        self.api_runner: AppRunner | None = None
        self.setup_report: SetupReport | None = None
        self.ready = asyncio.Event()     # sinks open, registry made
        self._started = False             # sources started
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # the scheme first, when InfluxDB answers: it creates the database with its raw
        # policy as the default, so early points never meet a missing policy; if InfluxDB
        # is away, the sources start anyway and the setup keeps trying in the background
        setup_pending = self.settings.setup and not await self._setup_once(self.SETUP_WAIT)
        async with contextlib.AsyncExitStack() as stack:
            sink = await stack.enter_async_context(InfluxSink(self.settings.sink_config()))
            self.sink = sink
            sinks = [sink, *self.extra_sinks]
            if self.settings.mqtt is not None:
                self.alerts = await stack.enter_async_context(MqttAlertSink(self.settings.mqtt))
                sinks.append(self.alerts)
            self.registry = StreamRegistry(self.settings.derive, sinks)
            self.uploads = UploadSource(self.registry)
            self.ready.set()
            if self.settings.api is not None:
                from .api import start_api  # imported only when configured (aiohttp's app)
                self.api_runner = await start_api(self, self.settings.api,
                                                  state_dir=self.settings.state_dir)
            tasks = []
            tuned = _tune_gc()
            try:
                if setup_pending:
                    tasks.append(asyncio.create_task(self._setup(), name="influx:setup"))
                for src in list(self.sources):
                    self._start_source(src)
                self._started = True
                log.info("serving %d source(s): %s", len(self.source_tasks),
                         ", ".join(t.get_name() for t in self.source_tasks.values()) or "none")
                await self._stop.wait()
            finally:
                if self.api_runner is not None:     # no new uploads or connections
                    from .api import stop_api
                    await stop_api(self.api_runner)
                tasks += self.source_tasks.values()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self.source_tasks.clear()
                self.registry.end_all("service stopped")
                _restore_gc(tuned)
                log.info("sources stopped; flushing the sink")

    # -- sources added and removed while running (the HTTP API's connections) --------

    def add_source(self, source: Source) -> None:
        """Start ``source`` now (or with the others, if the service has not
        started yet)."""
        self.sources.append(source)
        if self._started and not self._stop.is_set():
            self._start_source(source)

    async def remove_source(self, source: object) -> None:
        """Stop ``source``: its open streams end, their last points are made."""
        self.sources = [s for s in self.sources if s is not source]
        task = self.source_tasks.pop(id(source), None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _start_source(self, source: Source) -> None:
        task = asyncio.create_task(self._supervise(source), name=f"source:{source.kind}")
        self.source_tasks[id(source)] = task
        task.add_done_callback(functools.partial(self._finished, id(source)))

    def _finished(self, key: int, task: asyncio.Task[None]) -> None:
        if self.source_tasks.get(key) is task:
            del self.source_tasks[key]

    async def _setup_once(self, timeout: float | None = None) -> bool:
        """Apply the rollup scheme once; False when it should be tried again
        (InfluxDB away).  Refused credentials or rights (an admin is needed)
        are logged and not retried."""
        import aiohttp

        from .errors import LiveprofError
        from .influx_setup import setup
        from .sinks.errors import SinkAuthError

        try:
            report = await asyncio.wait_for(setup(self.settings.setup_config()), timeout)
        except SinkAuthError as exc:
            log.error("retention/rollup setup refused: %s; points wait until the %r "
                      "policy exists: run `liveprof influx setup` as an admin, or set "
                      "setup = false", exc, self.settings.rollups.raw.name)
            return True
        except (TimeoutError, LiveprofError, OSError, aiohttp.ClientError) as exc:
            log.warning("retention/rollup setup failed (%s)", exc or "timeout")
            return False
        self.setup_report = report
        log.info("retention/rollups: %d changed, %d kept", len(report.changed), len(report.kept))
        return True

    async def _setup(self) -> None:
        """Retry the setup with a growing delay until it is done."""
        backoff = Backoff(1.0, 60.0)
        while not await self._setup_once():
            delay = backoff.next()
            log.info("retrying the retention/rollup setup in %.0f s", delay)
            await asyncio.sleep(delay)

    async def _supervise(self, source) -> None:
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await source.run(self.registry)
                return
            except asyncio.CancelledError:
                raise
            except (PermanentSourceError, OSError) as exc:
                if isinstance(exc, PermanentSourceError) or exc.errno in PERMANENT_ERRNOS:
                    log.error("source %s stopped: %s (not retried: fix it and restart)",
                              source.kind, exc)
                    return
                delay = backoff.next()
                log.warning("source %s: %s; trying again in %.1f s", source.kind, exc, delay)
                await asyncio.sleep(delay)
            except SourceError as exc:
                delay = backoff.next()
                log.warning("source %s: %s; trying again in %.1f s", source.kind, exc, delay)
                await asyncio.sleep(delay)
            except Exception:
                delay = backoff.next()
                log.exception("source %s failed; restarting it in %.1f s", source.kind, delay)
                await asyncio.sleep(delay)

    # -- the ServiceFacade (ingest/facade.py): all the HTTP API sees ---------------------

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    def stream_records(self) -> list[StreamRecord]:
        return self.registry.records() if self.registry is not None else []

    def forget_streams(self, keys: list[int]) -> None:
        if self.registry is not None:
            self.registry.forget(keys)

    def source_kinds_running(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for task in list(self.source_tasks.values()):
            kind = task.get_name().removeprefix("source:")
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def connection_kinds(self) -> Mapping[str, type[BaseModel]]:
        return {kind: model for kind, (model, _) in CONNECTION_KINDS.items()}

    def add_connection(self, kind: str, config: BaseModel) -> object:
        source = CONNECTION_KINDS[kind][1](config)
        self.add_source(source)
        return source

    async def remove_connection(self, handle: object) -> None:
        await self.remove_source(handle)

    def connection_status(self, handle: object) -> SourceStatus:
        stats = {k: v for k in ("streams", "connections", "errors")
                 if isinstance(v := getattr(handle, k, None), int)}
        return SourceStatus(running=id(handle) in self.source_tasks,
                            peer=getattr(handle, "peer", None), stats=stats)

    def open_upload(self, peer: str, app: str | None, host: str | None) -> UploadStream:
        if self.uploads is None:
            raise ServiceNotReady("the service is not running yet")
        return self.uploads.open(peer, app, host)

    async def readiness(self) -> Readiness:
        if self.sink is None or self.registry is None:
            return Readiness(False, "the service is starting")
        if self.settings.setup and self.setup_report is None:
            # points written before the retention policies exist are refused
            return Readiness(False, "retention/rollup setup pending")
        alerts = self.alerts
        if alerts is not None and not alerts.healthy:
            status = self.alerts_status() or {}
            return Readiness(False, f"MQTT alerts: publisher {status.get('state')}", status)
        try:
            async with asyncio.timeout(5.0):
                await self.sink.healthcheck()
        except Exception as exc:
            return Readiness(False, f"InfluxDB: {mask_url(str(exc) or type(exc).__name__)}")
        return Readiness(True)

    def sink_stats(self) -> SinkStats | None:
        return self.sink.stats if self.sink is not None else None

    def alert_stats(self) -> MqttAlertStats | None:
        return self.alerts.stats if self.alerts is not None else None

    def alerts_status(self) -> dict[str, Any] | None:
        if self.alerts is None:
            return None
        status = dict(self.alerts.status())
        if isinstance(status.get("last_error"), str):
            status["last_error"] = mask_url(status["last_error"])
        return status

    async def wait_for_room(self, limit_bytes: int, timeout: float) -> bool:
        if self.sink is None:
            return True
        return await self.sink.wait_for_room(limit_bytes, timeout)

    async def settle(self, session: str | None, timeout: float) -> bool:
        if self.sink is None:
            return False
        try:
            await self.sink.flush(timeout=timeout)
        except Exception as exc:
            log.warning("points not yet stored: %s", exc or type(exc).__name__)
            return False
        return session is None or self.sink.dropped_points(session) == 0

    async def stored_session(self, session: str, apps: list[str] | None) -> dict[str, Any] | None:
        if self.sink is None:
            return None
        rp = self.sink.config.retention_policy
        target = (quote_ident(rp) + "." if rp else "") + quote_ident("session")
        where = f'"session" = {quote_string(session)}'
        if apps is not None:
            where += " AND (" + " OR ".join(f'"app" = {quote_string(a)}' for a in apps) + ")"
        try:
            series = await self.sink.query(f"SELECT * FROM {target} WHERE {where} LIMIT 1")
        except Exception as exc:
            raise StoreError(str(exc) or type(exc).__name__) from exc
        for s in series:
            for row in s.rows():
                return row
        return None

    async def delete_session(self, session: str, apps: list[str] | None) -> None:
        if self.sink is None:
            raise StoreError("the service is starting")
        try:  # points of the session still queued would land after the drop
            await self.sink.flush(timeout=10.0)
        except Exception as exc:
            log.debug("flush before dropping %s: %s", session, exc)
        try:
            if apps is None:
                await self.sink.delete_series({"session": session})
            for app in apps or ():
                await self.sink.delete_series({"session": session, "app": app})
        except Exception as exc:
            raise StoreError(str(exc) or type(exc).__name__) from exc
