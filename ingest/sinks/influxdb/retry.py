"""Pure retry decisions: what a /write status means, and what ``Retry-After``
asks for.  The delay between attempts is ``ingest.backoff.Backoff``, the one
every reconnect loop uses."""

from __future__ import annotations

import enum


class Action(enum.Enum):
    OK = "ok"  # delivered
    RETRY = "retry"  # transient: try the same batch again after a backoff
    DROP = "drop"  # the data is refused: drop (the bad part of) the batch, count it
    SPLIT = "split"  # the body is too large: send it in halves
    FATAL = "fatal"  # configuration (credentials, permission, database): stop, keep the data


def classify(status: int) -> Action:
    """The action for an HTTP status of InfluxDB's /write.

    2xx delivered; 408 and 429 and 5xx (but 501, which will not change) are
    transient; 401/403 (credentials) and 404 (database not found) are
    configuration errors that retrying cannot fix but that must not lose data;
    413 asks for smaller bodies; any other 4xx refuses the data itself.
    """
    if 200 <= status < 300:
        return Action.OK
    if status in (408, 429) or (500 <= status < 600 and status != 501):
        return Action.RETRY
    if status in (401, 403, 404):
        return Action.FATAL
    if status == 413:
        return Action.SPLIT
    return Action.DROP


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None otherwise."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from InfluxDB, the backoff will do
    return seconds if seconds >= 0 else None
