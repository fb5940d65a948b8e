"""``liveprof serve``: every configured source at once, into InfluxDB.

Order of things: open the sinks (InfluxDB, which resumes its spool; the
MQTT alert sink when configured, which never blocks ingest), apply the retention/rollup scheme (``influx setup``, idempotent; in
the background, retried until InfluxDB answers), start one named task per
source, all feeding one ``StreamRegistry``;
on shutdown (SIGINT/SIGTERM, or ``stop()``) cancel the sources (each ends its
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
import logging
from typing import Any

from .backoff import Backoff
from .config import Settings
from .errors import PERMANENT_ERRNOS, PermanentSourceError, SourceError
from .sinks import InfluxSink
from .sinks.mqtt import MqttAlertSink
from .sources.fifo import FifoSource
from .sources.file import FileSource
from .sources.monitor_tcp import MonitorTcpSource
from .sources.monitor_udp import MonitorUdpSource
from .sources.socket import SocketSource
from .sources.stdin import StdinSource
from .streams import StreamRegistry

log = logging.getLogger("liveprof.service")


def build_sources(settings: Settings) -> list[Any]:
    sources: list[Any] = [MonitorTcpSource(m) for m in settings.monitors]
    if settings.monitor_udp is not None:
        sources.append(MonitorUdpSource(settings.monitor_udp))
    sources += [SocketSource(c) for c in settings.sockets]
    sources += [FifoSource(c) for c in settings.fifos]
    sources += [FileSource(c) for c in settings.files]
    if settings.stdin is not None:
        sources.append(StdinSource(settings.stdin))
    return sources


class Service:
    SETUP_WAIT = 10.0   # seconds the sources wait for the retention/rollup setup at start

    def __init__(self, settings: Settings, extra_sinks: list | None = None):
        self.settings = settings
        self.extra_sinks = list(extra_sinks or [])
        self.sources = build_sources(settings)
        self.source_tasks: dict[int, asyncio.Task] = {}   # by id(source), while running
        self.registry: StreamRegistry | None = None
        self.sink: InfluxSink | None = None
        self.alerts: MqttAlertSink | None = None
        self.api_runner = None
        self.setup_report = None
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
            self.ready.set()
            if self.settings.api is not None:
                from .api import start_api
                self.api_runner = await start_api(self, self.settings.api,
                                                  state_dir=self.settings.state_dir)
            tasks = []
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
                log.info("sources stopped; flushing the sink")

    # -- sources added and removed while running (the HTTP API's connections) --------

    def add_source(self, source) -> None:
        """Start ``source`` now (or with the others, if the service has not
        started yet)."""
        self.sources.append(source)
        if self._started and not self._stop.is_set():
            self._start_source(source)

    async def remove_source(self, source) -> None:
        """Stop ``source``: its open streams end, their last points are made."""
        if source in self.sources:
            self.sources.remove(source)
        task = self.source_tasks.pop(id(source), None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _start_source(self, source) -> None:
        task = asyncio.create_task(self._supervise(source), name=f"source:{source.kind}")
        self.source_tasks[id(source)] = task
        task.add_done_callback(lambda t, key=id(source): self._finished(key, t))

    def _finished(self, key: int, task: asyncio.Task) -> None:
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
