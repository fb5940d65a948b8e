"""What an alert says (docs/alerts.md, "Payload"): the ``Alert`` value the
rules make and the payload of each kind, whatever carries it afterwards.

Nothing here knows MQTT: topics are the publisher's
(``ingest.sinks.mqtt_messages``), and so are delivery and retries."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.derive.point import Point

__all__ = ["ALERT_GC_PAUSE", "ALERT_GC_PAUSE_SHARE", "Alert", "Window", "gc_pause_alert",
           "iso_time", "pause_share_alert"]

ALERT_GC_PAUSE = "gc_pause"  # one collection paused longer than the threshold
ALERT_GC_PAUSE_SHARE = "gc_pause_share"  # a window's pauses took more than a share of it


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """One alert: its ``kind``, whom it is about (the point's tags) and the
    ``payload`` a subscriber gets (a JSON object, docs/alerts.md)."""

    kind: str
    app: str
    host: str
    session: str
    time_ns: int  # the collection's start (gc_pause) or the window's (gc_pause_share)
    payload: dict[str, Any]


def iso_time(ns: int) -> str:
    """Unix nanoseconds as ISO 8601 UTC with all nine digits:
    ``2015-07-17T09:29:35.371186356Z``."""
    sec, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def _generation(tags: dict[str, str]) -> int | None:
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
        "pause_ms": pause_ns / 1e6 if isinstance(pause_ns, int | float) else None,
        "threshold_ns": threshold_ns,
        "threshold_ms": threshold_ns / 1e6,
        "generation": _generation(tags),
        "kind": tags.get("kind"),
    }
    for key, value in point.fields.items():
        payload.setdefault(key, value)
    return payload


@dataclasses.dataclass(slots=True)
class Window:
    """One session's pause-share window: the collections starting in it."""

    start_ns: int  # window start, Unix ns (a multiple of the window length)
    pause_ns: float = 0  # summed pauses (ints from the deriver)
    collections: int = 0
    max_pause_ns: float = 0
    open: bool = True  # False once judged: later collections of it are late
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


def pause_share_alert(window: Window, window_ns: int, threshold: float) -> dict[str, Any]:
    """The payload of a ``gc_pause_share`` alert for a judged window."""
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
