"""liveprof's pure protocol layer: bytes in, typed values out, no I/O."""

from .eventlog import (
    DecodeError,
    Decoder,
    EndOfStream,
    Event,
    EventType,
    Header,
    LogData,
    LogEnd,
    LogSplitter,
    LogStart,
    Skipped,
    event_json,
)

__all__ = ["DecodeError", "Decoder", "EndOfStream", "Event", "EventType", "Header", "event_json"]
__all__ += ["LogData", "LogEnd", "LogSplitter", "LogStart", "Skipped"]
