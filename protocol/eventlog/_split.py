"""Cut an arbitrary byte stream into eventlogs, sans-IO.

A named pipe, a file holding several runs, or standard input carry eventlogs
one after the other, and a reader may join in the middle of one.
``LogSplitter.feed(data)`` returns what ``data`` completed, in order:

* ``Skipped(offset, count)``: bytes that belong to no log (the tail of a log
  whose start was missed, garbage, a header that did not parse), counted;
* ``LogStart(offset)``: a log begins (its whole header has been read and
  parsed: a log starts only with a valid header);
* ``LogData(data)``: the next bytes of the current log, exactly as received;
* ``LogEnd(offset, error)``: the log is over at stream offset ``offset``;
  ``error`` is ``None`` after its end marker, else why it ended.

Rules:

* Out of a log, bytes are discarded up to the next ``hdrb`` ``hetb``; the
  header that follows must parse, or the search goes on one byte later.
* In a log, record boundaries come from a ``Decoder(only=set())`` (payloads
  are skipped, not decoded), so event payload bytes are never taken for a
  header.  After the end marker the next log's header is expected.
* A log that does not parse (``DecodeError``) ends with that error, and the
  search for a header resumes where it failed.
* A log cut off without its end marker (a killed program whose next run
  writes to the same pipe) is found when a header starts inside it: the
  decoder either fails right at the header (a cut between records) or, if
  the cut fell inside a record, reads the new header as that record's
  payload and fails soon after.  So a ``hdrb`` ``hetb`` inside a log is
  watched by a second decoder ("witness") and the bytes from it on are held
  back until one of them wins.  The log is cut where the witness starts when
  the log's decoder fails at or after it, or reads an "end marker" the
  witness parses through (two bytes of the new header).  The held bytes go
  to the log when the witness's header does not parse (payload bytes that
  merely look like one), when its log ends before the log does (a whole
  eventlog carried in an event's payload), or past ``max_hold`` bytes.
* ``LogData`` carries whole records (and whole header parts) only: the
  bytes of a record go out once it is complete, so a log cut off or found
  malformed hands out exactly its bytes before the cut or the bad record.
  A chunk that ends in a proper prefix of ``hdrbhetb`` also keeps those (at
  most 7) bytes until the next ``feed``: they may start a new log.

Memory is bounded: out of a log at most 7 bytes; in a log one record (or
header declaration) plus one chunk; a header being checked or bytes held
behind a witness at most ``max_hold`` plus one chunk.

States (one object in ``LogSplitter._state``, its type is the state):
``_Seek`` (out of a log: the <= 7 bytes that may start a header), ``_Probe``
(a header is being checked: its bytes held) and ``InLog`` (``_split_log.py``:
a log, with an optional ``Witness`` for a header seen inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._header import BAD, DONE, MAGIC, scan_header
from ._split_log import InLog, Item, LogData, LogEnd, LogStart, Skipped, prefix_tail

MAX_HOLD = 1 << 20

__all__ = ["LogData", "LogEnd", "LogSplitter", "LogStart", "Skipped"]


@dataclass(slots=True)
class _Seek:
    """Out of a log, looking for MAGIC."""

    tail: bytes = b""    # <= 7 bytes that may start MAGIC


@dataclass(slots=True)
class _Probe:
    """A header is being checked: its bytes are held until it parses or fails."""

    at: int              # stream offset of its first byte
    held: bytearray = field(default_factory=bytearray)
    pos: int = 0         # where ``scan_header`` resumes in ``held``


class LogSplitter:
    """Sans-IO: ``feed(bytes) -> [LogStart | LogData | LogEnd | Skipped]``,
    ``close()`` at end of input.  See the module docstring for the rules.

    ``max_hold`` bounds the bytes kept while a header is checked or a witness
    decides (a longer header is not taken for one).
    """

    def __init__(self, max_hold: int = MAX_HOLD):
        if max_hold < 64:
            raise ValueError("max_hold must be at least 64 bytes")
        self.max_hold = max_hold
        self.offset = 0          # stream offset of the next byte fed
        self.logs = 0            # logs started
        self.skipped = 0         # bytes skipped in all
        self._state: _Seek | _Probe | InLog = _Seek()

    @property
    def in_log(self) -> bool:
        """True between a ``LogStart`` and its ``LogEnd``."""
        return isinstance(self._state, InLog)

    @property
    def held(self) -> int:
        """Bytes fed but not handed out yet: a possible start of a header, a
        header being checked, or the log's bytes not yet out (bounded: see
        the module docstring)."""
        state = self._state
        if isinstance(state, InLog):
            return len(state.unemitted)
        if isinstance(state, _Probe):
            return len(state.held)
        return len(state.tail)

    # -- public API ------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> list[Item]:
        out: list[Item] = []
        if not data:
            return out
        chunk = bytes(data)
        at = self.offset
        self.offset += len(chunk)
        self._run(chunk, at, out)
        return out

    def close(self) -> list[Item]:
        """End of input: the current log (if any) ends with an error, bytes
        kept for a possible header are skipped.  The splitter can be fed again
        afterwards, as if a new stream began (offsets keep counting)."""
        out: list[Item] = []
        while True:
            state = self._state
            if isinstance(state, InLog):
                rest, at = state.close(self.offset, out)
                self._state = _Seek()
                self._run(rest, at, out)
            elif isinstance(state, _Probe):
                rest, at = self._lose_probe(state, out)
                self._run(rest, at, out)
            else:
                if state.tail:
                    self._skip(self.offset - len(state.tail), len(state.tail), out)
                self._state = _Seek()
                return out

    # -- machinery -------------------------------------------------------------

    def _run(self, chunk: bytes | None, at: int, out: list[Item]) -> None:
        while chunk is not None:
            state = self._state
            if isinstance(state, InLog):
                chunk, at = state.feed(chunk, at, out)
                if state.done:
                    self._state = _Seek()
            elif isinstance(state, _Probe):
                chunk, at = self._in_probe(state, chunk, at, out)
            else:
                chunk, at = self._seek(state, chunk, at, out)

    def _skip(self, at: int, count: int, out: list[Item]) -> None:
        if count <= 0:
            return
        self.skipped += count
        last = out[-1] if out else None
        if isinstance(last, Skipped) and last.offset + last.count == at:
            out[-1] = Skipped(last.offset, last.count + count)
        else:
            out.append(Skipped(at, count))

    def _seek(self, state: _Seek, chunk: bytes, at: int, out: list[Item]) -> tuple[bytes | None, int]:
        """Out of a log: look for MAGIC."""
        buf = state.tail + chunk if state.tail else chunk
        buf_at = at - len(state.tail)
        state.tail = b""
        i = buf.find(MAGIC)
        if i < 0:
            keep = prefix_tail(buf)
            self._skip(buf_at, len(buf) - keep, out)
            state.tail = buf[len(buf) - keep:] if keep else b""
            return None, 0
        self._skip(buf_at, i, out)
        self._state = _Probe(buf_at + i)
        return buf[i:], buf_at + i

    def _in_probe(self, probe: _Probe, chunk: bytes, at: int,
                  out: list[Item]) -> tuple[bytes | None, int]:
        """A header is being checked: hold its bytes until it parses or fails."""
        probe.held += chunk
        status, probe.pos = scan_header(probe.held, probe.pos)
        if status == BAD:
            return self._lose_probe(probe, out)
        if status == DONE:
            # a valid header: a log begins; a fresh decoder reads it from the start
            out.append(LogStart(probe.at))
            self.logs += 1
            self._state = InLog(probe.at, self.max_hold)
            return bytes(probe.held), probe.at
        if len(probe.held) > self.max_hold:
            return self._lose_probe(probe, out)
        return None, 0

    def _lose_probe(self, probe: _Probe, out: list[Item]) -> tuple[bytes | None, int]:
        """The header did not parse: skip its first byte, search the rest."""
        self._state = _Seek()
        self._skip(probe.at, 1, out)
        return bytes(probe.held[1:]) or None, probe.at + 1
