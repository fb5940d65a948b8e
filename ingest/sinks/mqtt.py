# (over 400 lines: one publisher; its lifecycle, window and failure counts share its queue)
"""Live GC alerts over MQTT (docs/alerts.md): the publisher.

``submit(points)`` feeds the alert rules (``ingest.alerts.GcPauseRules``, a
pure transform) and puts each alert they make on a bounded in-memory queue
(``put_nowait``); it never waits for the broker: when the queue is full the
oldest alert is dropped and counted (``dropped_full``).  A ``gc_pause``
alert is thus queued by the ``submit`` of its ``gc`` point and published as
soon as the publisher is free: nothing holds it for a later point, a window
or a batch (docs/alerts.md, "When an alert leaves").

``run()`` (started by ``async with sink`` or by the caller as a task) loops
``async with aiomqtt.Client(...)``: connect, publish the queued alerts in order
with QoS 1, up to ``WINDOW`` of them before the first PUBACK comes (what is
queued together goes out together: one wake-up of the loop for the lot, not a
round trip each), and on any connection loss leave the client, wait a
jittered, capped, growing delay (``ingest.backoff.Backoff``) and connect
again, forever.  Alerts whose PUBACK did not come stay first in line, in
order, and are published again on the next connection (QoS 1: at least once,
so a subscriber may see one twice after a reconnect).

No alert can stop the publisher: one the client refuses (``ValueError``, ...)
is dropped at once, one that loses the connection ``MAX_ATTEMPTS`` times as
the oldest alert not acknowledged (a broker that cuts clients sending it) is
dropped then; both are logged and
counted per alert kind (``failed``).  Should ``run()`` still end on an
unexpected error, a supervisor starts it again after a backoff
(``publisher_restarts``); ``healthy`` and ``status()`` tell readiness.

Topics: ``ingest.sinks.mqtt_messages``.  Errors are translated at this edge:
no ``aiomqtt.MqttError`` nor ``OSError`` leaves a public method;
``healthcheck()`` raises ``AlertSinkError`` (broker named, credentials masked,
the client's error as cause), ``close()`` does not raise for the broker, and
the publisher's connection errors become ``stats.last_error`` and a warning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Self

from ingest.alerts import Alert, GcPauseRules
from ingest.backoff import Backoff
from ingest.sinks.mqtt_config import MqttAlertConfig, MqttAlertStats
from ingest.sinks.mqtt_messages import topic_of

if TYPE_CHECKING:
    import aiomqtt

    from ingest.derive.point import Point

log = logging.getLogger("liveprof.sinks.mqtt")

__all__ = ["MAX_ATTEMPTS", "MqttAlertConfig", "MqttAlertSink", "MqttAlertStats"]

ClientFactory = Callable[[MqttAlertConfig], "aiomqtt.Client"]  # tests: a client of their own


@dataclasses.dataclass(slots=True)
class _Outgoing:
    """An alert on its way: where it goes and how often it was tried."""

    alert: Alert
    topic: str
    attempts: int = 0  # publish calls made for it


MAX_ATTEMPTS = 5  # an alert in flight when the connection was lost this often is dropped
WINDOW = 8  # alerts published before the first is acknowledged (aiomqtt warns past 10)


class MqttAlertSink:
    """``submit(points)`` never blocks; ``run()`` publishes until cancelled.

    ``async with MqttAlertSink(cfg) as sink`` starts ``run()`` as a named task
    (``sink:mqtt``) and, on leaving, gives it up to ``close_timeout`` to
    publish what is queued, then stops it."""

    kind = "mqtt"

    def __init__(self, config: MqttAlertConfig, *, client_factory: ClientFactory | None = None) -> None:
        self.config = config
        self.stats = MqttAlertStats()
        self.rules = GcPauseRules(pause_threshold_ns=config.pause_threshold_ns,
                                  share_threshold=config.pause_share_threshold,
                                  window_ns=config.pause_share_window_ns)
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue(maxsize=config.queue_size)
        self._inflight: list[_Outgoing] = []  # taken from the queue, not yet acknowledged
        self._task: asyncio.Task | None = None
        self._idle = asyncio.Event()  # nothing queued nor in flight
        self._idle.set()
        self._client_factory = client_factory
        self._closing = False
        self._restarting = False  # the publisher died and waits to be started again
        self._attempting = False  # a publish of the alerts in flight is under way

    # -- ingest side -----------------------------------------------------------------

    def submit(self, points: Iterable[Point]) -> None:
        """Queue the alerts the rules make of these points.  Returns at once,
        whatever the broker does."""
        rules = self.rules
        for alert in rules.feed(points):
            self._put(alert)
        self.stats.gc_points = rules.gc_points
        self.stats.share_late = rules.share_late

    def end_windows(self) -> None:
        """Judge every open pause-share window now (at shutdown)."""
        for alert in self.rules.end():
            self._put(alert)

    def _put(self, alert: Alert) -> None:
        q = self._queue
        item = _Outgoing(alert, topic_of(self.config.topic_prefix, alert))
        if q.full():
            q.get_nowait()
            self.stats.dropped_full += 1
            if self.stats.dropped_full == 1 or self.stats.dropped_full % 1000 == 0:
                log.warning("MQTT alert queue full (%d): dropping the oldest alerts "
                            "(%d dropped so far)", q.maxsize, self.stats.dropped_full)
        q.put_nowait(item)
        self.stats.alerts += 1
        self._idle.clear()
        self._gauge()

    def _gauge(self) -> None:
        self.stats.queued = self._queue.qsize() + len(self._inflight)

    @property
    def pending(self) -> int:
        """Alerts not yet acknowledged by the broker."""
        return self._queue.qsize() + len(self._inflight)

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
        """Return when the broker accepts a connection (and the login) now;
        else raise ``AlertSinkError`` saying which broker and what failed."""
        import aiomqtt

        try:
            async with self._client():
                pass
        except (aiomqtt.MqttError, OSError) as exc:
            raise self.config.broker_error("cannot connect to", exc) from exc

    # -- publishing ------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
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
            except (aiomqtt.MqttError, OSError) as exc:
                error = cfg.broker_error("lost the connection to" if connected else "cannot connect to",
                                         exc)
                self.stats.last_error = str(error)
                if connected:
                    self.stats.disconnects += 1
                else:
                    self.stats.connect_failures += 1
            finally:
                self.stats.connected = False
                self._attempt_failed()
            delay = backoff.next()
            log.warning("%s; %s in %.1f s, %d alert(s) waiting", self.stats.last_error,
                        "reconnecting" if connected else "retrying", delay, self.pending)
            await asyncio.sleep(delay)

    async def _serve(self, client: aiomqtt.Client) -> None:
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
    async def _watch(client: aiomqtt.Client) -> None:
        async for _ in client.messages:  # we subscribe to nothing: only ends on loss
            pass
        raise _lost()

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        import aiomqtt

        inflight = self._inflight
        while True:
            if not inflight:
                if self._queue.empty():
                    self._idle.set()
                inflight.append(await self._queue.get())
            else:
                self.stats.republished += len(inflight)
            while len(inflight) < WINDOW and not self._queue.empty():
                inflight.append(self._queue.get_nowait())
            self._gauge()
            batch = list(inflight)
            batch[0].attempts += 1  # (a lost connection is the oldest one's doing, if any's)
            self._attempting = True
            # (each takes itself out of inflight once acknowledged: a lost
            # connection, which cancels this task, leaves the others first in line)
            # one PUBACK timeout for the lot (not a timer and a task per alert)
            try:
                async with asyncio.timeout(self.config.timeout):
                    if len(batch) == 1:  # (no task for one)
                        results: list = [None]
                        try:
                            await self._publish(client, batch[0])
                        except Exception as exc:
                            results[0] = exc
                    else:
                        results = await asyncio.gather(
                            *(self._publish(client, item) for item in batch), return_exceptions=True)
            except TimeoutError:
                raise aiomqtt.MqttError("Operation timed out") from None  # (as aiomqtt's own)
            lost: BaseException | None = None
            bug: BaseException | None = None
            for item, failure in zip(batch, results):
                if failure is None:
                    continue
                if isinstance(failure, (aiomqtt.MqttError, OSError)):
                    lost = lost or failure  # the connection: counted by run() (_attempt_failed)
                elif isinstance(failure, (ValueError, TypeError)):  # this alert cannot be sent
                    self.stats.publish_errors += 1
                    self._give_up(item, f"the MQTT client refused it: {type(failure).__name__}: {failure}")
                elif isinstance(failure, Exception):  # not the connection: maybe the alert, maybe a bug
                    self.stats.publish_errors += 1
                    self._give_up(item, f"publishing failed: {type(failure).__name__}: {failure}")
                    bug = bug or failure
                else:
                    raise failure  # (cancelled)
            if lost is not None:
                raise lost  # the alerts not acknowledged stay
            self._attempting = False
            if bug is not None:
                raise bug  # the supervisor starts the publisher again
            self._gauge()
            if self._queue.empty() and not inflight:
                self._idle.set()

    async def _publish(self, client: aiomqtt.Client, item: _Outgoing) -> None:
        cfg = self.config
        body = json.dumps(item.alert.payload, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode("utf-8", "replace")
        await client.publish(item.topic, body, qos=cfg.qos, retain=cfg.retain,
                             timeout=math.inf)  # (the caller's timeout covers a batch)
        if item in self._inflight:
            self._inflight.remove(item)
            self.stats.published += 1

    def _attempt_failed(self) -> None:
        """The connection ended while alerts in flight were being published:
        count it; the oldest of them, once it was the oldest at ``MAX_ATTEMPTS``
        losses, is given up (a broker that cuts every client sending it, e.g.
        over its max_packet_size)."""
        if not self._attempting:
            return
        self._attempting = False
        self.stats.publish_errors += 1
        if self._inflight and self._inflight[0].attempts >= MAX_ATTEMPTS:
            item = self._inflight[0]
            self._give_up(item, f"the connection ended during each of {item.attempts} "
                                "attempts to publish it (does the broker refuse it?)")

    def _give_up(self, item: _Outgoing, why: str) -> None:
        alert = item.alert
        kind = alert.kind
        s = self.stats
        s.failed += 1
        s.failed_by_alert[kind] = s.failed_by_alert.get(kind, 0) + 1
        s.last_error = why[:500]
        log.error("MQTT alert %s of app %.80r session %.40r dropped: %.300s (topic %.200s; "
                  "%d alert(s) given up so far)", kind, alert.app, alert.session, why,
                  item.topic, s.failed)
        if item in self._inflight:
            self._inflight.remove(item)
        self._gauge()
        if self._queue.empty() and not self._inflight:
            self._idle.set()


def _lost() -> aiomqtt.MqttError:
    import aiomqtt

    return aiomqtt.MqttError("connection to the broker ended")
