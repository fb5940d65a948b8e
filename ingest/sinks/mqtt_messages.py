"""Where an alert goes: topics ``<prefix>/<app>/<session>/alert/<kind>``
from any app and session text (docs/alerts.md, "Topics").  What an alert says
(its payload) is the rules' (``ingest.alerts``).

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

import hashlib
import re

from ingest.alerts.alert import ALERT_GC_PAUSE, Alert

__all__ = ["LEVEL_MAX_BYTES", "alert_topic", "topic_level", "topic_of"]

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


def topic_of(prefix: str, alert: Alert) -> str:
    """The topic ``alert`` is published on."""
    return alert_topic(prefix, alert.app, alert.session, alert.kind)
