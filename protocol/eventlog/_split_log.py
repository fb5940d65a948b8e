"""The splitter's ``InLog`` state: a log being read, and the ``Witness``
decoder that watches a header seen inside it (rules: ``_split.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ._decoder import DecodeError, Decoder
from ._header import DONE, MAGIC, scan_header


@dataclass(frozen=True, slots=True)
class LogStart:
    offset: int          # stream offset of the log's first byte (its ``hdrb``)


@dataclass(frozen=True, slots=True)
class Skipped:
    offset: int          # stream offset of the first byte skipped
    count: int


@dataclass(frozen=True, slots=True)
class LogData:
    data: bytes          # the next bytes of the current log


@dataclass(frozen=True, slots=True)
class LogEnd:
    offset: int          # stream offset just past the log's last byte
    error: str | None    # None: the end marker was read


Item = LogStart | LogData | LogEnd | Skipped  # what LogSplitter.feed returns


def prefix_tail(buf: bytes | bytearray) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of MAGIC."""
    for k in range(min(len(MAGIC) - 1, len(buf)), 0, -1):
        if buf[-k:] == MAGIC[:k]:
            return k
    return 0


def cut_message(at: int) -> str:
    return f"log cut off before its end marker: a new header begins at stream offset {at}"


class Witness:
    """A second decoder reading from a ``hdrb hetb`` found inside the log."""

    __slots__ = ("decoder", "at", "end", "fail", "header")

    def __init__(self, at: int):
        self.decoder = Decoder(only=set())
        self.at = at                          # stream offset of its header
        self.end: int | None = None           # where its log ended
        self.fail: int | None = None          # where it failed
        self.header: bool | None = None       # its header checked: valid or not

    @property
    def stop(self) -> int | None:
        """Where it stopped reading (failed, or ended), if it did."""
        return self.fail if self.fail is not None else self.end


class InLog:
    """One log, from its ``hdrb`` on.  ``feed`` and ``close`` return the bytes
    left over (``None``: none) and their stream offset; ``done`` is set once
    the log has ended and its ``LogEnd`` is out."""

    def __init__(self, at: int, max_hold: int):
        self.decoder = Decoder(only=set())
        self.max_hold = max_hold
        self.at = at                          # stream offset of the log's start
        self.emitted = at                     # stream offset of unemitted[0]
        self.unemitted = bytearray()          # fed to the decoder, not yet handed out
        self.scan_from = at + len(MAGIC)      # where the next MAGIC search starts (its own is no witness)
        self.witness: Witness | None = None
        self.log_end = 0                      # where the log's end marker ended
        self.sizes: dict[int, int | None] | None = None  # the log's declared payload sizes
        self.spans: dict[int, int | None] = {}  # candidate -> end of the log's record holding it
        self.done = False

    def close(self, offset: int, out: list[Item]) -> tuple[bytes | None, int]:
        """End of input at stream offset ``offset``."""
        if self.decoder.ended:          # a witness was undecided: it loses
            return self.cut(self.log_end, None, out)
        if self.witness is not None:
            return self.cut(self.witness.at, cut_message(self.witness.at), out)
        end = self.decoder.close()
        self.emit(len(self.unemitted), out)
        where = f"cut in event type {end.event_id}" if end.event_id is not None \
            else f"cut in the {end.reason}" if end.reason == "header" else "cut"
        out.append(LogEnd(offset, f"input ended before the end marker ({where})"))
        self.done = True
        return None, 0

    def emit(self, upto: int, out: list[Item]) -> None:
        """Hand out the first ``upto`` unemitted bytes as log data."""
        if upto <= 0:
            return
        u = self.unemitted
        if upto == len(u):
            data = bytes(u)
            u.clear()
        else:
            data = bytes(u[:upto])
            del u[:upto]
        self.emitted += upto
        out.append(LogData(data))

    def cut(self, at: int, error: str | None, out: list[Item]) -> tuple[bytes | None, int]:
        """End the log at stream offset ``at``; returns the bytes after it."""
        self.emit(at - self.emitted, out)
        rest = bytes(self.unemitted)
        out.append(LogEnd(at, error))
        self.done = True
        return (rest or None), at

    def feed(self, chunk: bytes, at: int, out: list[Item]) -> tuple[bytes | None, int]:
        log = self.decoder
        end = at + len(chunk)
        fail_at = 0
        error: DecodeError | None = None
        self.unemitted += chunk
        base = self.emitted
        # the first header candidate in the new bytes (none: the fast path)
        i = self.unemitted.find(MAGIC, max(0, self.scan_from - base))
        if not log.ended:
            fed = at
            r0 = self.at + log.offset   # the record the decoder waits to complete
            try:
                # feed the decoder up to each candidate, to learn the record
                # that holds it (its payload may carry those bytes)
                while i >= 0 and not log.ended:
                    h = base + i
                    if h in self.spans:
                        pass
                    elif h < fed:        # begins in the bytes kept from the last chunk
                        # (a record the decoder completed there is < 10 bytes
                        # past h, so it is the one that holds h)
                        self.spans[h] = r0 if r0 > h else self._record_end(h, r0)
                    else:
                        if h > fed:
                            log.feed(self.unemitted[fed - base:i])
                            fed = h
                        if not log.ended:
                            self.spans[h] = self._record_end(h, self.at + log.offset)
                    i = self.unemitted.find(MAGIC, i + 1)
                if fed < end and not log.ended:
                    log.feed(self.unemitted[fed - base:])
                    fed = end
            except DecodeError as exc:
                error, fail_at = exc, self.at + exc.offset
            else:
                if log.ended:
                    assert log.end_offset is not None
                    self.log_end = self.at + log.end_offset
                    log.trailing.clear()
            i = self.unemitted.find(MAGIC, max(0, self.scan_from - base))
        ended_at = self.log_end if log.ended else None
        # fast path: no witness, no header in sight
        if self.witness is None and ended_at is None and error is None and i < 0:
            self.scan_from = end - prefix_tail(self.unemitted)
            self.emit(self._ready(), out)
            return None, 0
        if error is not None:
            self._watch(at, end, fail_at)
            # a witness right after the failing record's first byte: the log
            # was cut one byte into a record, whose type then read "\0h"
            if self.witness is not None and self.witness.at <= fail_at + 1:
                return self.cut(self.witness.at, cut_message(self.witness.at), out)
            return self.cut(fail_at, f"malformed log: {error}", out)
        if ended_at is not None:
            self._watch(at, end, ended_at)
            wit = self.witness
            if wit is None or wit.at >= ended_at:
                return self.cut(ended_at, None, out)
            if wit.stop is not None or wit.at + wit.decoder.offset >= ended_at:
                # the witness read on past the log's "end marker": two bytes of
                # the next header, read by a log cut off in a record
                return self.cut(wit.at, cut_message(wit.at), out)
            # undecided: wait for more bytes (the witness fails, or gets past it)
        elif self._watch(at, end, None):
            assert self.witness is not None
            return self.cut(self.witness.at, cut_message(self.witness.at), out)
        upto = self._ready()
        if self.witness is not None:
            upto = min(upto, self.witness.at - self.emitted)
        self.emit(upto, out)
        return None, 0

    def _record_end(self, h: int, r: int) -> int | None:
        """Where the log's record that starts at ``r`` and holds stream offset
        ``h`` ends (``h`` itself if a record starts there); None if unknown
        (in the header, or not enough bytes)."""
        header = self.decoder.header
        if r >= h:
            return h
        if header is None:
            return None
        if self.sizes is None:
            self.sizes = {t: d.size for t, d in header.declared().items()}
        u, k = self.unemitted, r - self.emitted
        if k < 0 or k + 12 > len(u):
            return None
        type_id = u[k] << 8 | u[k + 1]
        if type_id not in self.sizes:
            return None
        size = self.sizes[type_id]
        if size is None:
            return r + 12 + (u[k + 10] << 8 | u[k + 11])
        return r + 10 + size

    def _ready(self) -> int:
        """How many unemitted bytes may go out: whole records (or header
        parts) only, and not a tail that may start a new header."""
        log = self.decoder
        done = self.log_end if log.ended else self.at + log.offset
        return min(done - self.emitted, len(self.unemitted) - prefix_tail(self.unemitted))

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
            wit = self.witness
            if wit is None:
                i = self.unemitted.find(MAGIC, max(0, self.scan_from - self.emitted))
                if i < 0 or (stopped is not None and self.emitted + i > stopped + 1):
                    self.scan_from = max(self.emitted, end - (len(MAGIC) - 1))
                    return False
                wit = self.witness = Witness(self.emitted + i)
                feed_from = wit.at
            else:
                feed_from = new_at
            if wit.stop is None:
                try:
                    wit.decoder.feed(self.unemitted[feed_from - self.emitted:])
                except DecodeError as exc:
                    wit.fail = wit.at + exc.offset
                else:
                    if wit.decoder.ended:
                        assert wit.decoder.end_offset is not None
                        wit.end = wit.at + wit.decoder.end_offset
                        wit.decoder.trailing.clear()
            if wit.header is None and wit.decoder.header is not None:
                status, _ = scan_header(bytes(self.unemitted[wit.at - self.emitted:]))
                wit.header = status == DONE
            if not wit.header and (wit.fail is not None or wit.header is False):
                self._drop_witness(wit)     # not even a header: payload bytes
                continue
            stop = wit.stop
            span = self.spans.get(wit.at)
            if stop is not None and span is not None and stop <= span + 2 \
                    and stopped is not None and self.decoder.ended \
                    and not self._escapes(wit.at, span):
                # inside one event's payload (perhaps ending on the log's own end marker)
                self._drop_witness(wit)
                continue
            if end - wit.at > self.max_hold:
                self._drop_witness(wit)
                continue
            # a log that reaches past the log's record holding its start: the
            # log was cut off there, whatever its decoder makes of what follows
            return stop is not None and (span is None or stop > span + 2)

    def _escapes(self, after: int, span: int) -> bool:
        """Does a later header in the same record of the log run on past that
        record?  Then the record swallowed whole logs (a log cut off in a long
        record), and the witness before it is a log too, not payload."""
        u, base = self.unemitted, self.emitted
        i = u.find(MAGIC, after + 1 - base)
        while 0 <= i and base + i < span:
            status, _ = scan_header(bytes(u[i:]))
            if status == DONE:
                d = Decoder(only=set())
                try:
                    d.feed(u[i:])
                    # still reading at the end of the bytes: it ran past the log's end
                    stop = base + i + d.end_offset if d.end_offset is not None else base + len(u)
                except DecodeError as exc:
                    stop = base + i + exc.offset
                if stop > span + 2:
                    return True
            i = u.find(MAGIC, i + 1)
        return False

    def _drop_witness(self, wit: Witness) -> None:
        self.scan_from = wit.at + 1
        self.spans.pop(wit.at, None)
        self.witness = None
