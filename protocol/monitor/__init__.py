"""The 2016 live-profile-monitor protocol, sans-IO (spec: monitor-protocol.md).

- ``FrameReader`` / ``frame``: TCP framing (4-byte big-endian length + body).
- ``decode_message`` / ``encode_message``: CBOR ``ProfileMsg`` bodies, typed.
- ``Reassembler``: split payloads, any order, bounded, expiring.
- ``Session``: messages -> the eventlog bytes they carry (the ``Decoder``'s
  input; events come out with cap None), keeping the latest ``EventlogState``.
- ``Encoder``: the sending side (``liveprof agent``): one eventlog run's
  bytes -> message bodies (header, blocks of events with their capability,
  state snapshot folded by ``StateFold``); ``frames`` / ``datagrams`` put
  them on a wire.  ``Blocks`` is the receiving side of blocks (section 7.4).
- ``agent_capset`` / ``agent_identity``: the agent's host and app name in the
  snapshot (docs/monitor-protocol.md section 6.7).
- ``sign_datagram`` / ``verify_datagram``: the HMAC tag of authenticated
  datagrams (liveprof's extension, docs/monitor-protocol.md section 3.4).

What ``__all__`` lists is this package's contract; the ``_`` modules are
machinery.  Every error a peer's bytes can cause is a ``ProtocolError``
(and a ``ValueError``, except ``HeaderChanged``).
"""

from .._errors import ProtocolError
from ._auth import DEFAULT_ALLOW, TAG_SIZE, AllowList, AuthError, datagram_key, sign_datagram, verify_datagram
from ._blocks import Blocks, BlockStats
from ._fold import AGENT_CAPSET, StateFold, agent_capset, agent_identity, program_name
from ._frames import MAX_FRAME, FrameError, FrameReader, frame
from ._messages import (
                    BlockHeader,
                    BlockPart,
                    EventMessage,
                    Full,
                    HeaderLength,
                    HeaderType,
                    Message,
                    MessageError,
                    Part,
                    ServicePause,
                    SplitHeader,
                    StateMessage,
                    decode_datagram,
                    decode_message,
                    encode_message,
                    split_payload,
)
from ._reassembly import Budget, Reassembler, ReassemblyStats
from ._sender import EncodeError, Encoder, datagrams, frames, pack_datagrams
from ._session import END_OF_DATA, HeaderChanged, Session, SessionError, SessionStats, parse_type_record
from ._state import (
                    CapsetState,
                    CapState,
                    EventlogState,
                    StateError,
                    TaskState,
                    ThreadState,
                    decode_state,
                    encode_state,
)

__all__ = [
    "DEFAULT_ALLOW", "TAG_SIZE", "AllowList", "AuthError", "datagram_key", "sign_datagram", "verify_datagram",
    "MAX_FRAME", "FrameError", "FrameReader", "frame",
    "Blocks", "BlockStats", "AGENT_CAPSET", "StateFold", "agent_capset", "agent_identity",
    "program_name",
    "EncodeError", "Encoder", "datagrams", "frames", "pack_datagrams",
    "BlockHeader", "BlockPart", "EventMessage", "Full", "HeaderLength", "HeaderType", "Message",
    "MessageError", "Part", "ServicePause", "SplitHeader", "StateMessage", "decode_datagram",
    "decode_message",
    "encode_message", "split_payload",
    "Budget", "Reassembler", "ReassemblyStats",
    "END_OF_DATA", "HeaderChanged", "Session", "SessionError", "SessionStats",
    "parse_type_record",
    "CapsetState", "CapState", "EventlogState", "StateError", "TaskState", "ThreadState",
    "decode_state", "encode_state", "ProtocolError",
]
