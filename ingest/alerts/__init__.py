"""GC-pause alerts as a pure transform: ``GcPauseRules.feed(points)`` gives
``Alert`` values (docs/alerts.md).  Synchronous and free of I/O: no asyncio,
no MQTT, no clock; ``ingest.sinks.mqtt`` publishes what it makes."""

from ingest.alerts.alert import (
    ALERT_GC_PAUSE,
    ALERT_GC_PAUSE_SHARE,
    Alert,
    gc_pause_alert,
    iso_time,
    pause_share_alert,
)
from ingest.alerts.rules import GcPauseRules

__all__ = [
    "ALERT_GC_PAUSE",
    "ALERT_GC_PAUSE_SHARE",
    "Alert",
    "GcPauseRules",
    "gc_pause_alert",
    "iso_time",
    "pause_share_alert",
]
