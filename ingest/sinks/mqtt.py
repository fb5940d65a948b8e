"""Live GC alerts over MQTT (docs/alerts.md).

``MqttAlertSink`` is a point sink like the InfluxDB one: ``submit(points)``
looks at each ``gc`` point and, when its ``pause_ns`` is over the threshold,
puts an alert on a bounded in-memory queue with ``put_nowait`` and returns.
It never waits for the broker: when the queue is full the oldest alert is
dropped and counted (``dropped_full``).

``run()`` (started by ``async with sink`` or by the caller as a task) loops
``async with aiomqtt.Client(...)``: connect, publish the queued alerts in order
with QoS 1 (each waits for its PUBACK), and on any connection loss leave the
client, wait a jittered, capped, growing delay (``ingest.backoff.Backoff``) and
connect again, forever.  An alert whose PUBACK did not come stays first in line
and is published again on the next connection (QoS 1: at least once, so a
subscriber may see it twice after a reconnect).

No alert can stop the publisher: one the client refuses (``ValueError``, ...)
is dropped at once, one that loses the connection ``MAX_ATTEMPTS`` times (a
broker that cuts clients sending it) is dropped then; both are logged and
counted per alert kind (``failed``).  Should ``run()`` still end on an
unexpected error, a supervisor starts it again after a backoff
(``publisher_restarts``); ``healthy`` and ``status()`` tell readiness.

Topic: ``<prefix>/<app>/<session>/alert/gc_pause`` (and ``.../gc_pause_share``
for the optional per-window share alert), each of app and session made one
safe, bounded level (``ingest.sinks.mqtt_messages``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from ingest.backoff import Backoff
from ingest.sinks.mqtt_config import MqttAlertConfig
from ingest.sinks.mqtt_messages import (
    ALERT_GC_PAUSE,
    ALERT_GC_PAUSE_SHARE,
    Window,
    alert_topic,
    gc_pause_alert,
    iso_time,
    pause_share_alert,
    topic_level,
)

if TYPE_CHECKING:
    from ingest.derive.point import Point

log = logging.getLogger("liveprof.sinks.mqtt")

__all__ = ["MqttAlertConfig", "MqttAlertSink", "MqttAlertStats", "alert_topic", "topic_level",
           "ALERT_GC_PAUSE", "ALERT_GC_PAUSE_SHARE", "iso_time", "gc_pause_alert", "pause_share_alert"]
_MAX_SHARE_SESSIONS = 10_000  # open pause-share windows kept (oldest forgotten)


# -- pure parts ------------------------------------------------------------------

@dataclasses.dataclass
class MqttAlertStats:
    """Counters of the alert sink, for /metrics."""

    gc_points: int = 0  # gc points looked at
    alerts: int = 0  # alerts queued (both kinds)
    published: int = 0  # alerts the broker acknowledged (QoS 0: sent)
    republished: int = 0  # publish attempts repeated after a lost connection
    share_late: int = 0  # gc points older than a pause-share window already judged
    dropped_full: int = 0  # oldest alerts dropped for the queue bound
    dropped_shutdown: int = 0  # alerts still queued when the sink closed
    connects: int = 0  # successful connections
    connect_failures: int = 0  # connection attempts that failed
    disconnects: int = 0  # connections lost (or publish timeouts)
    queued: int = 0  # alerts waiting (gauge, includes one in flight)
    publish_errors: int = 0  # publish attempts that failed (refused, or no PUBACK)
    failed: int = 0  # alerts given up: they could not be published
    failed_by_alert: dict[str, int] = dataclasses.field(default_factory=dict)  # ... per kind
    publisher_restarts: int = 0  # times the publisher task died and was started again
    connected: bool = False
    last_error: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class Alert:
    topic: str
    payload: dict[str, Any]
    attempts: int = 0  # publish calls made for it


MAX_ATTEMPTS = 5  # an alert in flight when the connection was lost this often is dropped


class MqttAlertSink:
    """``submit(points)`` never blocks; ``run()`` publishes until cancelled.

    ``async with MqttAlertSink(cfg) as sink`` starts ``run()`` as a named task
    (``sink:mqtt``) and, on leaving, gives it up to ``close_timeout`` to
    publish what is queued, then stops it."""

    kind = "mqtt"

    def __init__(self, config: MqttAlertConfig, *, client_factory=None) -> None:
        self.config = config
        self.stats = MqttAlertStats()
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=config.queue_size)
        self._inflight: Alert | None = None  # taken from the queue, not yet acknowledged
        self._threshold_ns = config.pause_threshold_ns
        self._window_ns = max(1, round(config.pause_share_window * 1e9))
        self._windows: collections.OrderedDict[tuple, Window] = collections.OrderedDict()
        self._task: asyncio.Task | None = None
        self._idle = asyncio.Event()  # nothing queued nor in flight
        self._idle.set()
        self._client_factory = client_factory
        self._closing = False
        self._restarting = False  # the publisher died and waits to be started again
        self._attempting = False  # a publish of the alert in flight is under way

    # -- ingest side -----------------------------------------------------------------

    def submit(self, points: Iterable[Point]) -> None:
        """Check the ``gc`` points; queue an alert for each pause over the
        threshold.  Returns at once, whatever the broker does."""
        share = self.config.pause_share_threshold
        threshold = self._threshold_ns
        for p in points:
            if p.measurement != "gc":
                if share is not None and self._windows:
                    self._maybe_close_window(p)
                continue
            self.stats.gc_points += 1
            pause = p.fields.get("pause_ns", 0)
            if pause > threshold:
                tags = p.tags
                self._put(Alert(alert_topic(self.config.topic_prefix, tags.get("app", ""),
                                            tags.get("session", "")),
                                gc_pause_alert(p, threshold)))
            if share is not None:
                self._add_to_window(p, pause)

    def _key(self, p: Point) -> tuple:
        t = p.tags
        return t.get("app", ""), t.get("host", ""), t.get("session", "")

    def _add_to_window(self, p: Point, pause: int) -> None:
        key = self._key(p)
        start = p.time - p.time % self._window_ns
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = Window(start, tags=dict(p.tags))
            if len(self._windows) > _MAX_SHARE_SESSIONS:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
            if start > w.start_ns:  # a later window: the open one is complete
                if w.open:
                    self._evaluate(w)
                w.start_ns, w.pause_ns, w.collections, w.max_pause_ns = start, 0, 0, 0
                w.open, w.tags = True, dict(p.tags)
            elif not w.open:  # older than a window already judged
                self.stats.share_late += 1
                return
            # (older than the open window, but after the last judged one:
            # counted in the open window)
        w.pause_ns += pause
        w.collections += 1
        w.max_pause_ns = max(w.max_pause_ns, pause)

    def _maybe_close_window(self, p: Point) -> None:
        """Judge a session's open window once its other points are a whole
        window past its end (a gc point may come after the window points of
        its time: it waits for the collection's statistics)."""
        w = self._windows.get(self._key(p))
        if w is not None and w.open and p.time >= w.start_ns + 2 * self._window_ns:
            self._evaluate(w)

    def _evaluate(self, w: Window) -> None:
        w.open = False
        threshold = self.config.pause_share_threshold
        if threshold is not None and w.pause_ns > threshold * self._window_ns:
            t = w.tags
            self._put(Alert(alert_topic(self.config.topic_prefix, t.get("app", ""),
                                        t.get("session", ""), ALERT_GC_PAUSE_SHARE),
                            pause_share_alert(w, self._window_ns, threshold)))

    def end_windows(self) -> None:
        """Judge every open pause-share window now (at shutdown)."""
        for w in self._windows.values():
            if w.open:
                self._evaluate(w)

    def _put(self, alert: Alert) -> None:
        q = self._queue
        if q.full():
            q.get_nowait()
            self.stats.dropped_full += 1
            if self.stats.dropped_full == 1 or self.stats.dropped_full % 1000 == 0:
                log.warning("MQTT alert queue full (%d): dropping the oldest alerts "
                            "(%d dropped so far)", q.maxsize, self.stats.dropped_full)
        q.put_nowait(alert)
        self.stats.alerts += 1
        self._idle.clear()
        self._gauge()

    def _gauge(self) -> None:
        self.stats.queued = self._queue.qsize() + (self._inflight is not None)

    @property
    def pending(self) -> int:
        """Alerts not yet acknowledged by the broker."""
        return self._queue.qsize() + (self._inflight is not None)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="sink:mqtt")
        return self._task

    @property
    def healthy(self) -> bool:
        """True while the publisher runs (connected or dialling the broker);
        False before ``start``, after ``close``, and while it waits to be
        restarted after dying.  A broker that is away is not unhealthy by
        itself (alerts queue; see ``status()["connected"]``)."""
        t = self._task
        return t is not None and not t.done() and not self._restarting and not self._closing

    def status(self) -> dict[str, Any]:
        """A summary for readiness and /readyz: state, broker, counters."""
        if self._task is None:
            state = "not started"
        elif self._closing or self._task.done():
            state = "stopped"
        elif self._restarting:
            state = "restarting"
        else:
            state = "connected" if self.stats.connected else "connecting"
        s = self.stats
        return {"healthy": self.healthy, "state": state, "broker": self.config.describe_broker(),
                "connected": s.connected, "pending": self.pending, "failed": s.failed,
                "publish_errors": s.publish_errors, "publisher_restarts": s.publisher_restarts,
                "last_error": s.last_error}

    async def _supervise(self) -> None:
        """Run the publisher; should it end on an unexpected error, log it,
        count it and start it again after a growing delay (reset once it has
        run a minute)."""
        cfg = self.config
        backoff = Backoff(cfg.backoff_initial, cfg.backoff_max)
        while True:
            began = time.monotonic()
            try:
                await self.run()
                error: BaseException = RuntimeError("the publisher returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            self.stats.publisher_restarts += 1
            self.stats.connected = False
            self.stats.last_error = f"{type(error).__name__}: {error}"[:500]
            if time.monotonic() - began > 60:
                backoff.reset()
            delay = backoff.next()
            log.error("the MQTT alert publisher stopped (%s); starting it again in %.1f s, "
                      "%d alert(s) waiting", self.stats.last_error, delay, self.pending,
                      exc_info=error)
            self._restarting = True
            try:
                await asyncio.sleep(delay)
            finally:
                self._restarting = False

    async def close(self, timeout: float | None = None) -> None:
        """Publish what is queued for up to ``timeout`` (default
        ``close_timeout``) while connected, then stop; what is left is
        counted in ``dropped_shutdown``."""
        if self._closing:
            return
        self._closing = True
        if self.config.pause_share_threshold is not None:
            self.end_windows()
        timeout = self.config.close_timeout if timeout is None else timeout
        if self._task is not None and not self._task.done() and self.pending and timeout > 0:
            try:
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
            except TimeoutError:
                pass
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        left = self.pending
        if left:
            self.stats.dropped_shutdown += left
            log.warning("closing with %d MQTT alert(s) not published", left)
        self.stats.connected = False

    aclose = close

    async def healthcheck(self) -> None:
        """Raise ``MqttError`` unless the broker accepts a connection now."""
        async with self._client():
            pass

    # -- publishing ------------------------------------------------------------------

    def _client(self):
        import aiomqtt

        if self._client_factory is not None:
            return self._client_factory(self.config)
        cfg = self.config
        host, port, tls, user, password = cfg.endpoint()
        return aiomqtt.Client(
            host, port, username=user, password=password, identifier=cfg.client_id,
            keepalive=cfg.keepalive, timeout=cfg.timeout,
            tls_context=ssl.create_default_context() if tls else None,
            logger=logging.getLogger("liveprof.sinks.mqtt.paho"),
        )

    async def run(self) -> None:
        """Connect, publish, reconnect; forever (until cancelled)."""
        import aiomqtt

        cfg = self.config
        backoff = Backoff(cfg.backoff_initial, cfg.backoff_max)
        broker = cfg.describe_broker()
        while True:
            connected = False
            try:
                async with self._client() as client:
                    connected = True
                    self.stats.connects += 1
                    self.stats.connected = True
                    backoff.reset()
                    log.info("connected to the MQTT broker %s", broker)
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                self.stats.last_error = str(exc) or type(exc).__name__
                if connected:
                    self.stats.disconnects += 1
                else:
                    self.stats.connect_failures += 1
            finally:
                self.stats.connected = False
                self._attempt_failed()
            delay = backoff.next()
            if connected:
                log.warning("lost the MQTT broker %s (%s); reconnecting in %.1f s, "
                            "%d alert(s) waiting", broker, self.stats.last_error, delay,
                            self.pending)
            else:
                log.warning("cannot connect to the MQTT broker %s (%s); retrying in %.1f s, "
                            "%d alert(s) waiting", broker, self.stats.last_error, delay,
                            self.pending)
            await asyncio.sleep(delay)

    async def _serve(self, client) -> None:
        """Publish until the connection is lost.  ``client.messages`` ends with
        an ``MqttError`` when it is, which stops the publisher even while it
        waits for an alert (the one in flight stays first in line); the first
        of the two to end stops the other, and its error is raised."""
        watch = asyncio.create_task(self._watch(client), name="sink:mqtt:watch")
        publish = asyncio.create_task(self._publish_loop(client), name="sink:mqtt:publish")
        try:
            done, _ = await asyncio.wait((watch, publish), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (watch, publish):
                t.cancel()
            await asyncio.gather(watch, publish, return_exceptions=True)
        for t in done:
            t.result()  # raises its MqttError (or a bug)

    @staticmethod
    async def _watch(client) -> None:
        async for _ in client.messages:  # we subscribe to nothing: only ends on loss
            pass
        raise _lost()

    async def _publish_loop(self, client) -> None:
        import aiomqtt

        cfg = self.config
        while True:
            if self._inflight is None:
                if self._queue.empty():
                    self._idle.set()
                self._inflight = await self._queue.get()
                self._gauge()
            else:
                self.stats.republished += 1
            alert = self._inflight
            alert.attempts += 1
            self._attempting = True
            try:
                body = json.dumps(alert.payload, separators=(",", ":"), ensure_ascii=False,
                                  default=str).encode("utf-8", "replace")
                await client.publish(alert.topic, body, qos=cfg.qos, retain=cfg.retain)
            except aiomqtt.MqttError:
                raise  # the connection: counted by run() (_attempt_failed), the alert stays
            except (ValueError, TypeError) as exc:  # this alert cannot be sent (topic, payload)
                self._attempting = False
                self.stats.publish_errors += 1
                self._give_up(alert, f"the MQTT client refused it: {type(exc).__name__}: {exc}")
                continue
            except Exception as exc:
                self._attempting = False  # not the connection: maybe the alert, maybe a bug
                self.stats.publish_errors += 1
                self._give_up(alert, f"publishing failed: {type(exc).__name__}: {exc}")
                raise  # the supervisor starts the publisher again
            self._attempting = False
            self._inflight = None
            self.stats.published += 1
            self._gauge()
            if self._queue.empty():
                self._idle.set()

    def _attempt_failed(self) -> None:
        """The connection ended while the alert in flight was being published:
        count it; past ``MAX_ATTEMPTS`` give the alert up (a broker that cuts
        every client sending it, e.g. over its max_packet_size)."""
        if not self._attempting:
            return
        self._attempting = False
        self.stats.publish_errors += 1
        alert = self._inflight
        if alert is not None and alert.attempts >= MAX_ATTEMPTS:
            self._give_up(alert, f"the connection ended during each of {alert.attempts} "
                                 "attempts to publish it (does the broker refuse it?)")

    def _give_up(self, alert: Alert, why: str) -> None:
        kind = str(alert.payload.get("alert", "?"))
        s = self.stats
        s.failed += 1
        s.failed_by_alert[kind] = s.failed_by_alert.get(kind, 0) + 1
        s.last_error = why[:500]
        log.error("MQTT alert %s of app %.80r session %.40r dropped: %.300s (topic %.200s; "
                  "%d alert(s) given up so far)", kind, alert.payload.get("app"),
                  alert.payload.get("session"), why, alert.topic, s.failed)
        if self._inflight is alert:
            self._inflight = None
        self._gauge()
        if self._queue.empty() and self._inflight is None:
            self._idle.set()


def _lost():
    import aiomqtt

    return aiomqtt.MqttError("connection to the broker ended")
