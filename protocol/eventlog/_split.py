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
"""

from __future__ import annotations

from dataclasses import dataclass

from ._decoder import HDRB, HETB, DecodeError, Decoder
from ._header import ETB, DeclarationError, parse_declaration

MAGIC = HDRB + HETB
MAX_HOLD = 1 << 20

__all__ = ["LogData", "LogEnd", "LogSplitter", "LogStart", "Skipped"]


@dataclass(frozen=True, slots=True)
class LogStart:
    offset: int          # stream offset of the log's first byte (its ``hdrb``)


@dataclass(frozen=True, slots=True)
class LogData:
    data: bytes          # the next bytes of the current log


@dataclass(frozen=True, slots=True)
class LogEnd:
    offset: int          # stream offset just past the log's last byte
    error: str | None    # None: the end marker was read


@dataclass(frozen=True, slots=True)
class Skipped:
    offset: int          # stream offset of the first byte skipped
    count: int


def _prefix_tail(buf) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of MAGIC."""
    for k in range(min(len(MAGIC) - 1, len(buf)), 0, -1):
        if buf[-k:] == MAGIC[:k]:
            return k
    return 0


NEED, BAD, DONE = range(3)


def scan_header(buf, pos: int = 0) -> tuple[int, int]:
    """Check the eventlog header that starts at ``buf[0]``, resuming at
    ``pos`` (0, or a position this returned with ``NEED``).

    Returns ``(DONE, end)`` with the offset just past ``datb``, ``(NEED, pos)``
    when ``buf`` ends inside it, ``(BAD, pos)`` when it is not a header.  A
    header holding another ``hdrbhetb`` is not one: a header cut off in a
    declaration reads the next header's bytes as that declaration's text and
    may then parse on through it, but no real header contains the magic."""
    n = len(buf)
    if pos == 0:
        if n < len(MAGIC):
            return (NEED, 0) if MAGIC.startswith(bytes(buf)) else (BAD, 0)
        if buf[:len(MAGIC)] != MAGIC:
            return BAD, 0
        pos = len(MAGIC)
    while True:
        if pos + 4 > n:
            return NEED, pos
        marker = buf[pos:pos + 4]
        if marker == b"hete":
            if pos + 12 > n:
                return NEED, pos
            if buf[pos + 4:pos + 12] != b"hdredatb":
                return BAD, pos
            end = pos + 12
            return (BAD, pos) if buf.find(MAGIC, 1, end) >= 0 else (DONE, end)
        if marker != ETB:
            return BAD, pos
        try:
            decl, at = parse_declaration(buf, pos)
        except DeclarationError:
            return BAD, pos
        if decl is None:
            return NEED, pos
        pos = at


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
        self._reset()

    def _reset(self) -> None:
        # out of a log
        self._tail = b""                     # <= 7 bytes that may start MAGIC
        # a header being checked
        self._probe: int | None = None       # header scan position in _held
        self._probe_at = 0
        self._held = bytearray()
        # in a log
        self._log: Decoder | None = None
        self._log_at = 0                     # stream offset of the log's start
        self._emitted = 0                    # stream offset of _unemitted[0]
        self._unemitted = bytearray()        # fed to _log, not yet handed out
        self._scan_from = 0                  # where the next MAGIC search starts
        self._wit: Decoder | None = None
        self._wit_at = 0
        self._wit_end: int | None = None     # where the witness's log ended
        self._wit_fail: int | None = None    # where the witness failed
        self._wit_header: bool | None = None  # its header checked: valid or not
        self._log_end = 0                    # where the log's end marker ended
        self._sizes: dict | None = None      # the log's declared payload sizes
        self._spans: dict[int, int | None] = {}  # candidate -> end of its record

    @property
    def in_log(self) -> bool:
        """True between a ``LogStart`` and its ``LogEnd``."""
        return self._log is not None

    # -- public API ------------------------------------------------------------

    def feed(self, data) -> list:
        out: list = []
        if not data:
            return out
        chunk = bytes(data)
        at = self.offset
        self.offset += len(chunk)
        self._run(chunk, at, out)
        return out

    def close(self) -> list:
        """End of input: the current log (if any) ends with an error, bytes
        kept for a possible header are skipped.  The splitter can be fed again
        afterwards, as if a new stream began (offsets keep counting)."""
        out: list = []
        while True:
            if self._log is not None:
                if self._log.ended:          # a witness was undecided: it loses
                    rest, at = self._cut(self._log_end, None, out)
                    self._run(rest, at, out)
                    continue
                if self._wit is not None:
                    rest, at = self._cut(self._wit_at, self._cut_message(self._wit_at), out)
                    self._run(rest, at, out)
                    continue
                end = self._log.close()
                self._emit(len(self._unemitted), out)
                where = f"cut in event type {end.event_id}" if end.event_id is not None \
                    else f"cut in the {end.reason}" if end.reason == "header" else "cut"
                out.append(LogEnd(self.offset, f"input ended before the end marker ({where})"))
                self._reset()
            elif self._probe is not None:
                rest, at = self._lose_probe(out)
                self._run(rest, at, out)
            else:
                if self._tail:
                    self._skip(self.offset - len(self._tail), len(self._tail), out)
                self._reset()
                return out

    # -- machinery -------------------------------------------------------------

    def _run(self, chunk: bytes | None, at: int, out: list) -> None:
        while chunk is not None:
            if self._log is not None:
                chunk, at = self._in_log(chunk, at, out)
            elif self._probe is not None:
                chunk, at = self._in_probe(chunk, at, out)
            else:
                chunk, at = self._seek(chunk, at, out)

    def _skip(self, at: int, count: int, out: list) -> None:
        if count <= 0:
            return
        self.skipped += count
        last = out[-1] if out else None
        if isinstance(last, Skipped) and last.offset + last.count == at:
            out[-1] = Skipped(last.offset, last.count + count)
        else:
            out.append(Skipped(at, count))

    def _seek(self, chunk: bytes, at: int, out: list):
        """Out of a log: look for MAGIC."""
        buf = self._tail + chunk if self._tail else chunk
        buf_at = at - len(self._tail)
        self._tail = b""
        i = buf.find(MAGIC)
        if i < 0:
            keep = _prefix_tail(buf)
            self._skip(buf_at, len(buf) - keep, out)
            self._tail = buf[len(buf) - keep:] if keep else b""
            return None, 0
        self._skip(buf_at, i, out)
        self._probe = 0
        self._probe_at = buf_at + i
        self._held = bytearray()
        return buf[i:], buf_at + i

    def _in_probe(self, chunk: bytes, at: int, out: list):
        """A header is being checked: hold its bytes until it parses or fails."""
        self._held += chunk
        status, self._probe = scan_header(self._held, self._probe)
        if status == BAD:
            return self._lose_probe(out)
        if status == DONE:
            # a valid header: a log begins; a fresh decoder reads it from the start
            held, held_at = bytes(self._held), self._probe_at
            self._probe, self._held = None, bytearray()
            out.append(LogStart(held_at))
            self.logs += 1
            self._log = Decoder(only=set())
            self._log_at = self._emitted = held_at
            self._scan_from = held_at + len(MAGIC)   # its own MAGIC is no witness
            self._unemitted = bytearray()
            return held, held_at
        if len(self._held) > self.max_hold:
            return self._lose_probe(out)
        return None, 0

    def _lose_probe(self, out: list):
        """The header did not parse: skip its first byte, search the rest."""
        held, at = bytes(self._held), self._probe_at
        self._probe, self._held = None, bytearray()
        self._skip(at, 1, out)
        return held[1:] or None, at + 1

    def _emit(self, upto: int, out: list) -> None:
        """Hand out the first ``upto`` unemitted bytes as log data."""
        if upto <= 0:
            return
        u = self._unemitted
        if upto == len(u):
            data = bytes(u)
            u.clear()
        else:
            data = bytes(u[:upto])
            del u[:upto]
        self._emitted += upto
        out.append(LogData(data))

    def _cut_message(self, at: int) -> str:
        return (f"log cut off before its end marker: a new header begins at stream offset {at}")

    def _cut(self, at: int, error: str | None, out: list):
        """End the log at stream offset ``at``; returns the bytes after it."""
        self._emit(at - self._emitted, out)
        rest = bytes(self._unemitted)
        out.append(LogEnd(at, error))
        self._reset()
        return (rest or None), at

    def _in_log(self, chunk: bytes, at: int, out: list):
        log = self._log
        end = at + len(chunk)
        fail_at: int | None = None
        error: DecodeError | None = None
        self._unemitted += chunk
        base = self._emitted
        # the first header candidate in the new bytes (none: the fast path)
        i = self._unemitted.find(MAGIC, max(0, self._scan_from - base))
        if not log.ended:
            fed = at
            r0 = self._log_at + log.offset   # the record the decoder waits to complete
            try:
                # feed the decoder up to each candidate, to learn the record
                # that holds it (its payload may carry those bytes)
                while i >= 0 and not log.ended:
                    h = base + i
                    if h in self._spans:
                        pass
                    elif h < fed:        # begins in the bytes kept from the last chunk
                        # (a record the decoder completed there is < 10 bytes
                        # past h, so it is the one that holds h)
                        self._spans[h] = r0 if r0 > h else self._record_end(h, r0)
                    else:
                        if h > fed:
                            log.feed(self._unemitted[fed - base:i])
                            fed = h
                        if not log.ended:
                            self._spans[h] = self._record_end(h, self._log_at + log.offset)
                    i = self._unemitted.find(MAGIC, i + 1)
                if fed < end and not log.ended:
                    log.feed(self._unemitted[fed - base:])
                    fed = end
            except DecodeError as exc:
                error, fail_at = exc, self._log_at + exc.offset
            else:
                if log.ended:
                    self._log_end = self._log_at + log.end_offset
                    log.trailing.clear()
            i = self._unemitted.find(MAGIC, max(0, self._scan_from - base))
        ended_at = self._log_end if log.ended else None
        # fast path: no witness, no header in sight
        if self._wit is None and ended_at is None and error is None and i < 0:
            self._scan_from = end - _prefix_tail(self._unemitted)
            self._emit(self._ready(), out)
            return None, 0
        if error is not None:
            self._watch(at, end, fail_at)
            # a witness right after the failing record's first byte: the log
            # was cut one byte into a record, whose type then read "\0h"
            if self._wit is not None and self._wit_at <= fail_at + 1:
                return self._cut(self._wit_at, self._cut_message(self._wit_at), out)
            return self._cut(fail_at, f"malformed log: {error}", out)
        if ended_at is not None:
            self._watch(at, end, ended_at)
            wit = self._wit
            if wit is None or self._wit_at >= ended_at:
                return self._cut(ended_at, None, out)
            if self._wit_fail is not None or self._wit_end is not None \
                    or self._wit_at + wit.offset >= ended_at:
                # the witness read on past the log's "end marker": two bytes of
                # the next header, read by a log cut off in a record
                return self._cut(self._wit_at, self._cut_message(self._wit_at), out)
            # undecided: wait for more bytes (the witness fails, or gets past it)
        elif self._watch(at, end, None):
            return self._cut(self._wit_at, self._cut_message(self._wit_at), out)
        upto = self._ready()
        if self._wit is not None:
            upto = min(upto, self._wit_at - self._emitted)
        self._emit(upto, out)
        return None, 0

    def _record_end(self, h: int, r: int) -> int | None:
        """Where the log's record that starts at ``r`` and holds stream offset
        ``h`` ends (``h`` itself if a record starts there); None if unknown
        (in the header, or not enough bytes)."""
        log = self._log
        if r >= h:
            return h
        if log.header is None:
            return None
        if self._sizes is None:
            self._sizes = {t: et.size for t, et in log.header.declared().items()}
        u, k = self._unemitted, r - self._emitted
        if k < 0 or k + 12 > len(u):
            return None
        type_id = u[k] << 8 | u[k + 1]
        if type_id not in self._sizes:
            return None
        size = self._sizes[type_id]
        if size is None:
            return r + 12 + (u[k + 10] << 8 | u[k + 11])
        return r + 10 + size

    def _ready(self) -> int:
        """How many unemitted bytes may go out: whole records (or header
        parts) only, and not a tail that may start a new header."""
        log = self._log
        done = self._log_end if log.ended else self._log_at + log.offset
        return min(done - self._emitted, len(self._unemitted) - _prefix_tail(self._unemitted))

    def _watch(self, new_at: int, end: int, stopped: int | None) -> bool:
        """Find, feed and judge the witness with the new bytes ``[new_at, end)``;
        ``stopped``: where the log's decoder failed or ended, if it did.
        True: the witness wins now (the log is cut where it starts).

        A witness whose header does not parse is payload bytes.  One that
        then stopped (failed, or read a whole log) past the end of the log's
        record that holds its start wins at once.  One that stopped inside
        it is payload (a header or a log carried in an event) if the log
        reaches its end marker, but wins if the log's decoder fails (a log
        cut off in a long record that swallowed the next log).  Any witness
        loses past ``max_hold`` bytes."""
        while True:
            if self._wit is None:
                i = self._unemitted.find(MAGIC, max(0, self._scan_from - self._emitted))
                if i < 0 or (stopped is not None and self._emitted + i > stopped + 1):
                    self._scan_from = max(self._emitted, end - (len(MAGIC) - 1))
                    return False
                self._wit = Decoder(only=set())
                self._wit_at, self._wit_end, self._wit_fail = self._emitted + i, None, None
                self._wit_header = None
                feed_from = self._wit_at
            else:
                feed_from = new_at
            if self._wit_end is None and self._wit_fail is None:
                try:
                    self._wit.feed(self._unemitted[feed_from - self._emitted:])
                except DecodeError as exc:
                    self._wit_fail = self._wit_at + exc.offset
                else:
                    if self._wit.ended:
                        self._wit_end = self._wit_at + self._wit.end_offset
                        self._wit.trailing.clear()
            if self._wit_header is None and self._wit.header is not None:
                status, _ = scan_header(bytes(self._unemitted[self._wit_at - self._emitted:]))
                self._wit_header = status == DONE
            if not self._wit_header and (self._wit_fail is not None or self._wit_header is False):
                self._drop_witness()        # not even a header: payload bytes
                continue
            stop = self._wit_fail if self._wit_fail is not None else self._wit_end
            span = self._spans.get(self._wit_at)
            if stop is not None and span is not None and stop <= span + 2 \
                    and stopped is not None and self._log.ended \
                    and not self._escapes(self._wit_at, span):
                # inside one event's payload (perhaps ending on the log's own end marker)
                self._drop_witness()
                continue
            if end - self._wit_at > self.max_hold:
                self._drop_witness()
                continue
            # a log that reaches past the log's record holding its start: the
            # log was cut off there, whatever its decoder makes of what follows
            return stop is not None and (span is None or stop > span + 2)

    def _escapes(self, after: int, span: int) -> bool:
        """Does a later header in the same record of the log run on past that
        record?  Then the record swallowed whole logs (a log cut off in a long
        record), and the witness before it is a log too, not payload."""
        u, base = self._unemitted, self._emitted
        i = u.find(MAGIC, after + 1 - base)
        while 0 <= i and base + i < span:
            status, _ = scan_header(bytes(u[i:]))
            if status == DONE:
                d = Decoder(only=set())
                try:
                    d.feed(u[i:])
                    # still reading at the end of the bytes: it ran past the log's end
                    stop = base + i + d.end_offset if d.ended else base + len(u)
                except DecodeError as exc:
                    stop = base + i + exc.offset
                if stop > span + 2:
                    return True
            i = u.find(MAGIC, i + 1)
        return False

    def _drop_witness(self) -> None:
        self._scan_from = self._wit_at + 1
        self._spans.pop(self._wit_at, None)
        self._wit, self._wit_end, self._wit_fail = None, None, None
