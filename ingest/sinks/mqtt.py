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

Topic: ``<prefix>/<app>/<session>/alert/gc_pause`` (and ``.../gc_pause_share``
for the optional per-window share alert), each of app and session escaped
(``topic_level``) so ``/ + #`` in an app name neither adds a level nor becomes
a wildcard.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from ingest.backoff import Backoff

if TYPE_CHECKING:
    from ingest.derive.point import Point

log = logging.getLogger("liveprof.sinks.mqtt")

ALERT_GC_PAUSE = "gc_pause"
ALERT_GC_PAUSE_SHARE = "gc_pause_share"
_MAX_SHARE_SESSIONS = 10_000  # open pause-share windows kept (oldest forgotten)


class MqttAlertConfig(BaseModel):
    """Where the live alerts go and when a collection is worth one.

    The broker is ``url`` (``mqtt://[user[:password]@]host[:port]``, or
    ``mqtts://`` for TLS with the system's CA certificates) when given, else
    ``host`` and ``port``; credentials in the URL win over ``username`` and
    ``password``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="mqtt://host[:port] or mqtts://...; "
                                              "overrides host and port")
    host: str = Field("127.0.0.1", min_length=1, description="broker host")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    tls: bool = Field(False, description="TLS with the system CA certificates "
                                         "(mqtts:// sets it too)")
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(None, description="MQTT client identifier; None: "
                                                    "a random one per connection")
    topic_prefix: str = Field("liveprof", description="first topic level(s); no + or #; "
                                                      "a trailing / is ignored")
    pause_threshold_ms: float = Field(
        100.0, ge=0, description="alert on every collection whose pause_ns exceeds this "
                                 "many milliseconds (fractions allowed: 0.5 is 500 us)")
    pause_share_threshold: float | None = Field(
        None, gt=0, le=1, description="also alert when GC pauses take more than this "
                                      "share (0..1) of a pause_share_window; None: off")
    pause_share_window: float = Field(10.0, gt=0, description="seconds, for pause_share_threshold")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the alert messages")
    retain: bool = Field(False, description="publish alerts as retained messages")
    keepalive: int = Field(60, ge=1, description="MQTT keepalive, seconds")
    timeout: float = Field(10.0, gt=0, description="connect (CONNACK) and PUBACK timeout, seconds")
    queue_size: int = Field(1000, ge=1, description="alerts held while the broker is away; "
                                                    "past it the oldest is dropped")
    backoff_initial: float = Field(0.5, gt=0, description="first delay before reconnecting, s")
    backoff_max: float = Field(30.0, gt=0, description="longest delay between attempts, s")
    close_timeout: float = Field(5.0, ge=0, description="how long closing may spend "
                                                        "publishing what is queued, s")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value:
            raise ValueError("the topic prefix must not be empty")
        bad = sorted({c for c in value if c in "+#\0"})
        if bad:
            raise ValueError(f"the topic prefix must not contain {' '.join(bad)!s} "
                             "(MQTT wildcards or NUL)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
        try:
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _checks(self):
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self

    @property
    def pause_threshold_ns(self) -> int:
        return round(self.pause_threshold_ms * 1_000_000)

    def endpoint(self) -> tuple[str, int, bool, str | None, str | None]:
        """``(host, port, tls, username, password)`` of the broker."""
        user = self.username
        password = self.password.get_secret_value() if self.password is not None else None
        if self.url is None:
            return self.host, self.port, self.tls, user, password
        parts = urlsplit(self.url)
        tls = self.tls or parts.scheme in ("mqtts", "ssl")
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password) if parts.password is not None else None
        return parts.hostname, parts.port or (8883 if tls else 1883), tls, user, password

    def describe_broker(self) -> str:
        host, port, tls, _, _ = self.endpoint()
        return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"


# -- pure parts ------------------------------------------------------------------

_LEVEL_ESC = str.maketrans({"%": "%25", "/": "%2F", "+": "%2B", "#": "%23", "\0": "%00"})


def topic_level(value: str) -> str:
    """One topic level from any text: ``%``, ``/``, ``+``, ``#`` and NUL are
    percent-encoded (``%25 %2F %2B %23 %00``), everything else is kept, so
    ``urllib.parse.unquote`` gives the text back and no value can add a level
    or act as a wildcard."""
    return value.translate(_LEVEL_ESC)


def alert_topic(prefix: str, app: str, session: str, alert: str = ALERT_GC_PAUSE) -> str:
    return f"{prefix}/{topic_level(app)}/{topic_level(session)}/alert/{alert}"


def iso_time(ns: int) -> str:
    """Unix nanoseconds as ISO 8601 UTC with all nine digits:
    ``2015-07-17T09:29:35.371186356Z``."""
    sec, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def _generation(tags: dict) -> int | None:
    try:
        return int(tags["gen"])
    except (KeyError, TypeError, ValueError):
        return None


def gc_pause_alert(point: Point, threshold_ns: int) -> dict[str, Any]:
    """The payload of a ``gc_pause`` alert for a ``gc`` point (docs/alerts.md)."""
    tags = point.tags
    pause_ns = point.fields.get("pause_ns", 0)
    payload: dict[str, Any] = {
        "alert": ALERT_GC_PAUSE,
        "app": tags.get("app", ""),
        "host": tags.get("host", ""),
        "session": tags.get("session", ""),
        "time": iso_time(point.time),
        "time_ns": point.time,
        "pause_ns": pause_ns,
        "pause_ms": pause_ns / 1e6,
        "threshold_ns": threshold_ns,
        "threshold_ms": threshold_ns / 1e6,
        "generation": _generation(tags),
        "kind": tags.get("kind"),
    }
    for key, value in point.fields.items():
        payload.setdefault(key, value)
    return payload


@dataclasses.dataclass
class _Window:
    start_ns: int  # window start, Unix ns (a multiple of the window length)
    pause_ns: int = 0
    collections: int = 0
    max_pause_ns: int = 0
    open: bool = True
    tags: dict = dataclasses.field(default_factory=dict)


def pause_share_alert(window: _Window, window_ns: int, threshold: float) -> dict[str, Any]:
    """The payload of a ``gc_pause_share`` alert for a closed window."""
    tags = window.tags
    return {
        "alert": ALERT_GC_PAUSE_SHARE,
        "app": tags.get("app", ""),
        "host": tags.get("host", ""),
        "session": tags.get("session", ""),
        "time": iso_time(window.start_ns),
        "time_ns": window.start_ns,
        "window_ns": window_ns,
        "pause_total_ns": window.pause_ns,
        "pause_max_ns": window.max_pause_ns,
        "collections": window.collections,
        "share": window.pause_ns / window_ns,
        "threshold": threshold,
    }


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
    connected: bool = False
    last_error: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class Alert:
    topic: str
    payload: dict[str, Any]


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
        self._windows: collections.OrderedDict[tuple, _Window] = collections.OrderedDict()
        self._task: asyncio.Task | None = None
        self._idle = asyncio.Event()  # nothing queued nor in flight
        self._idle.set()
        self._client_factory = client_factory
        self._closing = False

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
            w = self._windows[key] = _Window(start, tags=dict(p.tags))
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

    def _evaluate(self, w: _Window) -> None:
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
            self._task = asyncio.create_task(self.run(), name="sink:mqtt")
        return self._task

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
            body = json.dumps(alert.payload, separators=(",", ":"), ensure_ascii=False)
            await client.publish(alert.topic, body.encode(), qos=cfg.qos, retain=cfg.retain)
            self._inflight = None
            self.stats.published += 1
            self._gauge()
            if self._queue.empty():
                self._idle.set()


def _lost():
    import aiomqtt

    return aiomqtt.MqttError("connection to the broker ended")
