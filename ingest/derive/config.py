"""``DeriveConfig``: the ``derive`` section of the settings (ingest/config.py
composes it): which points are made, and how they are tagged.

Beside the derivers, and importing nothing but pydantic and the registry, so
that ``liveprof derive`` takes its flags' defaults from it without loading
every component's settings (ingest/commands/defaults.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .registry import REGISTRY


class DeriveConfig(BaseModel):
    """Which points are made, and how they are tagged (docs/schema.md)."""

    model_config = ConfigDict(extra="forbid")

    window: float = Field(default=1.0, gt=0, description="aggregation window, seconds")
    top: int = Field(default=10, ge=1, description="a label is named when among the busiest "
                                                   "this many of a window, and keeps its name")
    max_labels: int = Field(default=100, ge=1,
                            description="labels named per session and measurement (the rest: "
                                        "'other'); docs/schema.md")
    max_gap: float = Field(default=86400.0, gt=0,
                           description="a longer jump in eventlog time is a corrupt stream: "
                                       "its points end there, seconds")
    measurements: list[str] | None = Field(default=None, description="None: all of them")
    app: str | None = Field(default=None, description="the app tag; None: the program's name")
    host: str | None = Field(default=None, description="the host tag; None: the stream's peer")
    max_lag: float = Field(default=10.0, gt=0, description="live streams: longest an event "
                                                           "waits for time order, seconds")
    stream_idle: float = Field(default=0.25, gt=0,
                               description="live streams: a capability (or the global buffer) "
                                           "this far behind the newest event, in eventlog time, "
                                           "stops holding the others back, seconds; max_lag or "
                                           "more: never (docs/live.md)")

    correction_window: float = Field(default=10.0, ge=0,
                                     description="live streams: a late event up to this far "
                                                 "behind, in eventlog time, corrects the "
                                                 "windows already written; 0: none (late "
                                                 "events are only counted), seconds "
                                                 "(docs/live.md)")

    workers: Literal["auto", 1, 2] = Field(
        default="auto", description="`derive` and `import` of a regular file: 2 processes "
                                    "split the measurements between them (both cores), 1 keeps "
                                    "one; auto: 2 for files of 16 MiB or more on 2 cores or more "
                                    "(ingest/split.py)")

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @field_validator("measurements")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        unknown = [m for m in value if m not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown measurement(s) {unknown}; known: {sorted(REGISTRY)}")
        return value
