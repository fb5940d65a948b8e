"""liveprof's pure protocol layer: bytes in, typed values out, no I/O.

What ``__all__`` lists here, in ``protocol.eventlog`` and in
``protocol.monitor`` is the contract (h11 style): code outside ``protocol``
imports those names only.  Everything in the ``_`` modules is machinery that
may change without notice.

- ``protocol``: the eventlog names most callers need (the decoder, its
  values and errors, the stream splitter, ``EventType``) and ``ProtocolError``,
  the base of every exception raised on bad input.
- ``protocol.eventlog``: all of the eventlog decoder's contract (catalogue,
  field enums, bounds, header parsing).
- ``protocol.monitor``: the live-profile-monitor protocol.
"""

from ._errors import ProtocolError
from .eventlog import (
    Declaration,
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

__all__ = [
    "DecodeError", "Declaration", "Decoder", "EndOfStream", "Event", "EventType", "Header",
    "LogData", "LogEnd", "LogSplitter", "LogStart", "ProtocolError", "Skipped", "event_json",
]
