"""GHC eventlog decoding, sans-IO: ``Decoder.feed(bytes) -> [Event]``."""

from ._catalogue import CATALOGUE, EventSpec
from ._decoder import DecodeError, Decoder
from ._enums import CapsetType, HeapProfBreakdown, MsgTag, StopStatus
from ._events import Declaration, EndOfStream, Event, Header
from ._ids import EventType
from ._json import event_json
from ._split import LogData, LogEnd, LogSplitter, LogStart, Skipped

__all__ = [
    "CATALOGUE", "CapsetType", "Declaration", "DecodeError", "Decoder", "EndOfStream", "Event", "EventSpec",
    "EventType", "Header", "HeapProfBreakdown", "MsgTag", "StopStatus", "event_json",
    "LogData", "LogEnd", "LogSplitter", "LogStart", "Skipped",
]
