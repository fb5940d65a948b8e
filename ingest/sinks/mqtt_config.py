"""Settings and counters of the MQTT alert sink (``ingest.sinks.mqtt``, docs/alerts.md)."""

from __future__ import annotations

import dataclasses
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ingest.sinks.errors import AlertSinkError
from ingest.urls import mask_url

__all__ = ["MqttAlertConfig"]

_PREFIX_MAX = 512  # bytes of the topic prefix (the whole topic stays far below MQTT's 65535)


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
        bad = sorted({c for c in value if c in "+#" or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F})
        if bad:
            raise ValueError(f"the topic prefix must not contain {' '.join(map(repr, bad))} "
                             "(MQTT wildcards or control characters)")
        if len(value.encode("utf-8", "surrogatepass")) > _PREFIX_MAX:
            raise ValueError(f"the topic prefix is longer than {_PREFIX_MAX} bytes")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("the topic prefix is not valid UTF-8") from None
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

    @property
    def pause_share_window_ns(self) -> int:
        return max(1, round(self.pause_share_window * 1e9))

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
        host = parts.hostname or ""  # the validator made sure there is one
        return host, parts.port or (8883 if tls else 1883), tls, user, password

    def describe_broker(self) -> str:
        host, port, tls, _, _ = self.endpoint()
        return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"

    def describe_login(self) -> str:
        """The broker as errors name it: ``describe_broker()``, with ``***@``
        in it when a login is configured (as ``mask_url`` shows one: never
        the user nor the password; built here, since a user name may hold
        the characters that end a URL's user part)."""
        host, port, tls, user, _ = self.endpoint()
        return f"{'mqtts' if tls else 'mqtt'}://{'' if user is None else '***@'}{host}:{port}"

    def broker_error(self, what: str, exc: BaseException) -> AlertSinkError:
        """The liveprof error for ``exc`` (an ``aiomqtt.MqttError`` or an
        ``OSError``) met while ``what`` (e.g. ``"cannot connect to"``) the
        broker: ``"cannot connect to the MQTT broker mqtt://***@host:1883:
        [Errno 111] Connection refused"``.  A refused login says so and is not
        ``retryable``; URL credentials in the client's text are masked
        (``mask_url``); the client's error is the ``__cause__``."""
        detail = mask_url(str(exc) or type(exc).__name__)[:300]
        broker = self.describe_login()
        if _login_refused(exc):
            error = AlertSinkError(f"the MQTT broker {broker} refused the login: {detail}")
        else:
            error = AlertSinkError(f"{what} the MQTT broker {broker}: {detail}", retryable=True)
        error.__cause__ = exc
        return error


# CONNACK codes of a refused login: MQTT 3.1.1 (4 bad user name or password,
# 5 not authorised) and 5 (134, 135)
_LOGIN_REFUSED = frozenset({4, 5, 134, 135})


def _login_refused(exc: BaseException) -> bool:
    from aiomqtt.exceptions import MqttConnectError

    if not isinstance(exc, MqttConnectError):  # a negative CONNACK, nothing else
        return False
    value = getattr(exc.rc, "value", exc.rc)  # a paho ReasonCode, or an int
    return isinstance(value, int) and value in _LOGIN_REFUSED


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
