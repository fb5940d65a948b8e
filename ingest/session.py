"""TEMPORARY (facade branch): the end state the session helper's ingest/session.py defines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionEnd:
    complete: bool
    reason: str | None
    offset: int | None
    pending: int
    event_id: int | None
    error: str | None
    clock: str | None
