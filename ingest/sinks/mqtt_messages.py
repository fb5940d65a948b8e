"""What an alert says and where: payloads (docs/alerts.md, "Payload") and
topics, ``<prefix>/<app>/<session>/alert/<kind>`` from any app and session
text (docs/alerts.md, "Topics").

App and session come from the monitored program (the program name is the
first ProgramArgs argument), so a topic level must be safe whatever they hold:
a 30,000-character name once made a 90 KB topic that the MQTT client refused
(``ValueError``) and so killed the alert publisher.  A level is therefore

- one level: ``/`` and the wildcards ``+`` ``#`` are percent-encoded, and
  ``%`` itself, so ``urllib.parse.unquote`` gives the text back;
- valid MQTT UTF-8: NUL and the other control characters (C0, DEL, C1), the
  Unicode non-characters and lone surrogates (not UTF-8 at all) are
  percent-encoded as their UTF-8 (surrogate-pass) bytes, since a broker drops
  the connection of a client that sends them (MQTT 3.1.1, 1.5.3);
- bounded: past ``LEVEL_MAX_BYTES`` bytes (encoded), the level is cut (never
  inside a character or an escape) and ends with ``~`` and 16 hex digits of
  the SHA-256 of the whole text, so different long names stay apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.derive.point import Point

ALERT_GC_PAUSE = "gc_pause"
ALERT_GC_PAUSE_SHARE = "gc_pause_share"

LEVEL_MAX_BYTES = 128  # one encoded app or session level
_HASH_HEX = 16

_BAD = re.compile(
    "[%/+#\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


_TOKEN = re.compile(r"%[0-9A-F]{2}|.", re.S)  # an escape or one character: never cut inside


def _escape(match: re.Match) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8", "surrogatepass"))


def topic_level(value: str) -> str:
    """One safe, bounded topic level from any text (see the module docstring).
    Work is bounded too: only the first ``LEVEL_MAX_BYTES`` characters are
    encoded (each makes at least one byte), the rest is only hashed."""
    out = _BAD.sub(_escape, value[:LEVEL_MAX_BYTES + 1])
    if len(value) <= LEVEL_MAX_BYTES and len(out.encode()) <= LEVEL_MAX_BYTES:
        return out
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    room = LEVEL_MAX_BYTES - 1 - _HASH_HEX
    cut = []
    used = 0
    for token in _TOKEN.findall(out):
        size = len(token.encode())
        if used + size > room:
            break
        cut.append(token)
        used += size
    return f"{''.join(cut)}~{digest}"


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
class Window:
    start_ns: int  # window start, Unix ns (a multiple of the window length)
    pause_ns: int = 0
    collections: int = 0
    max_pause_ns: int = 0
    open: bool = True
    tags: dict = dataclasses.field(default_factory=dict)


def pause_share_alert(window: Window, window_ns: int, threshold: float) -> dict[str, Any]:
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
