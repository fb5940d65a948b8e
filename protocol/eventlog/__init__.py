"""GHC eventlog decoding, sans-IO: ``Decoder.feed(bytes) -> [Event]``.

What ``__all__`` lists is this package's contract; the ``_`` modules are
machinery.  ``Decoder`` turns the bytes of one eventlog into ``Event``s and
ends with an ``EndOfStream``; ``LogSplitter`` cuts a byte stream that carries
several eventlogs into logs; ``EventType`` names every event id;
``CATALOGUE`` describes every known type; ``parse_declaration`` is the one
reader of a header's event-type declarations; the ``MAX_*`` bounds are what the
decoder holds at most.  Bad input raises ``DecodeError`` (a ``ProtocolError``).
"""

from .._errors import ProtocolError
from ._catalogue import CATALOGUE, EventSpec
from ._decoder import MAX_DECLARATIONS, MAX_HEADER, MAX_TRAILING, DecodeError, Decoder
from ._enums import CapsetType, HeapProfBreakdown, MsgTag, StopStatus
from ._events import Declaration, EndOfStream, Event, Header
from ._header import MAX_DECLARATION, DeclarationError, parse_declaration
from ._ids import EventType
from ._json import event_json
from ._split import LogData, LogEnd, LogSplitter, LogStart, Skipped

__all__ = [
    "CATALOGUE", "MAX_DECLARATION", "MAX_DECLARATIONS", "MAX_HEADER", "MAX_TRAILING",
    "CapsetType", "DecodeError", "Declaration", "DeclarationError", "Decoder", "EndOfStream",
    "Event", "EventSpec", "EventType", "Header", "HeapProfBreakdown", "LogData", "LogEnd",
    "LogSplitter", "LogStart",
    "MsgTag", "ProtocolError", "Skipped", "StopStatus", "event_json", "parse_declaration",
]
