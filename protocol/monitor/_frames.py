"""TCP framing (spec 3.1): a 4-byte big-endian body length, then the body."""

from __future__ import annotations

import struct

from .._errors import ProtocolError

MAX_FRAME = 16 << 20  # no real message comes near this; a bigger length means a broken peer


class FrameError(ProtocolError, ValueError):
    """The byte stream cannot be split into frames any more; ``offset`` is the
    stream offset of the bad length prefix, ``frames`` the complete frames
    that came before it in the same ``feed``."""

    def __init__(self, message: str, offset: int, frames: list[tuple[int, bytes]] | None = None):
        super().__init__(f"{message} (stream offset {offset})")
        self.offset = offset
        self.frames = frames or []


def frame(body: bytes) -> bytes:
    """One frame for ``body`` (never empty: a zero length means end of stream)."""
    if not body:
        raise ValueError("a frame body cannot be empty")
    return struct.pack(">I", len(body)) + body


class FrameReader:
    """Sans-IO frame splitter: ``feed(bytes)`` returns ``(offset, body)`` for
    every complete frame, ``offset`` being where its length prefix starts.

    ``ended`` turns true at a zero-length frame, which the reference receiver
    treats as end of stream; later bytes are ignored.  A length over
    ``max_frame`` raises ``FrameError``: framing can no longer be trusted
    (the frames before it are on the error).
    Memory is one partial frame, at most ``max_frame`` + 4 bytes.
    """

    def __init__(self, max_frame: int = MAX_FRAME):
        self.max_frame = max_frame
        self.offset = 0          # stream offset of the first byte of self._buf
        self.ended = False
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.ended:
            return []
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= 4:
            (length,) = struct.unpack_from(">I", buf, pos)
            if length == 0:
                self.ended = True
                break
            if length > self.max_frame:
                del buf[:pos]
                self.offset += pos
                raise FrameError(f"frame length {length} exceeds the limit of "
                                 f"{self.max_frame} bytes", self.offset, out)
            if len(buf) - pos - 4 < length:
                break
            out.append((self.offset + pos, bytes(buf[pos + 4:pos + 4 + length])))
            pos += 4 + length
        del buf[:pos]
        self.offset += pos
        return out
