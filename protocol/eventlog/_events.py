"""The values the decoder returns: events, the header, the end-of-stream outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ._catalogue import BY_ID

UNKNOWN = "UnknownEvent"


class Event(NamedTuple):
    """One decoded event.

    ``type`` is the event type id, ``name`` the ghc-events constructor name,
    ``time`` nanoseconds since the RTS started, ``cap`` the capability of the
    enclosing block (``None`` for the global buffer or outside any block) and
    ``fields`` the payload values in the order of ``field_names()``.
    """

    type: int
    name: str
    time: int
    cap: int | None
    fields: tuple[Any, ...]

    def field_names(self) -> tuple[str, ...]:
        if self.name == UNKNOWN:
            return ("ref",)
        return BY_ID[self.type].fields[: len(self.fields)]

    def as_dict(self) -> dict[str, Any]:
        if self.name == UNKNOWN:
            return {"ref": self.type}
        return dict(zip(self.field_names(), self.fields))


@dataclass(frozen=True)
class Declaration:
    """One event-type declaration of the header: id, payload size (``None`` =
    variable) and the RTS's description."""

    id: int
    size: int | None
    description: str


@dataclass(frozen=True)
class Header:
    event_types: tuple[Declaration, ...]

    def declared(self) -> dict[int, Declaration]:
        """The last declaration of each id wins, as in ghc-events."""
        return {et.id: et for et in self.event_types}


@dataclass(frozen=True)
class EndOfStream:
    """What ``Decoder.close()`` found at the end of the input.

    ``complete`` is true when the end-of-data marker (0xFFFF) was read.
    Otherwise the stream was cut: ``offset`` is where the unfinished part
    starts (the byte after the last complete event), ``event_id`` the type of
    the event it was cut inside (``None`` if the cut fell between events or in
    the header), ``reason`` says where in the stream it happened, and
    ``pending`` how many bytes of the unfinished part were dropped.
    """

    complete: bool
    offset: int
    reason: str
    event_id: int | None = None
    pending: int = 0

    @property
    def truncated(self) -> bool:
        return not self.complete
