"""Errors of the sinks, under liveprof's root error."""

from __future__ import annotations

from ingest.errors import LiveprofError


class SinkError(LiveprofError):
    """A sink could not deliver.  ``retryable``: trying again later may work
    (InfluxDB down, 5xx); ``status``: the HTTP status when there was one."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class SinkAuthError(SinkError):
    """InfluxDB refused the credentials (401) or the permission (403): a
    configuration problem, never retried; the data is kept (memory, spool)."""


class InfluxQueryError(SinkError):
    """An InfluxQL statement failed (the error InfluxDB gave is the message)."""


class AlertSinkError(SinkError):
    """The MQTT alert sink could not reach its broker, or the broker refused
    it (``retryable`` False: the login was refused).  The message names the
    broker and what failed, never the credentials; the client's own error is
    the ``__cause__``."""
