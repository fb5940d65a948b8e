"""An on-disk FIFO of line-protocol batches: append-only segment files.

(Over 400 lines: one job, the on-disk queue, whose format, bounds and
recovery belong together; the record codec at the bottom is 40 of them.)

Layout of the directory::

    00000001000000000000.seg   segments, read in order of their number
    00000001000000000001.seg
    cursor.json                what was delivered: per segment, the offset up to
                               which everything was acknowledged, plus records
                               acknowledged beyond it (out-of-order acks)

A segment is a run of records, each a 16-byte header (magic, payload
length, line count, CRC-32 of the payload, little endian) and the payload:
with magic ``LPS1`` the lines, UTF-8, joined by ``\\n``; with ``LPS2`` (a
batch where a line holds a newline itself, inside a string field) the lines
as a JSON list.  The directory is 0700 and every file 0600, opened without
following symbolic links (``ingest.files``).  Writes are flushed to the OS at every
append (a crash of the process loses nothing) and a segment is fsynced when it
is sealed (full, or at ``close()``).  Opening scans every segment: a torn or
corrupt tail is cut off and counted (``corrupt_bytes``); the cursor tells what
was already delivered.  A crash between a delivery and the cursor update
replays that record again: delivery is at least once, and InfluxDB stores a
point written twice once (same series, same time).

``read()`` hands out records in order and ``ack()`` marks one delivered (in any
order); a fully acknowledged sealed segment is deleted.  ``prepend()`` puts
batches before everything else (in-flight batches saved at shutdown).  When an
append would take the directory over ``max_bytes``, the oldest segments are
deleted first and their unread lines counted in ``dropped_lines``; ``append``
returns what it dropped (the lines themselves, read back before the segment
goes: the caller charges them to their sessions) so the caller can log it.

Synchronous and asyncio-free; the sink calls it from the event loop (appends
are page-cache writes) and may pass ``seal`` to fsync full segments elsewhere
(a thread); ``close()`` always syncs the last one itself.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.files import open_private, private_dir, write_private

__all__ = ["Spool", "SpoolRecord", "Dropped", "fsync_close"]

log = logging.getLogger("liveprof.sinks.spool")

_HEADER = struct.Struct("<4sIII")
_MAGIC = b"LPS1"  # lines joined by newlines
_MAGIC_JSON = b"LPS2"  # lines as a JSON list (some line holds a newline)
_MAGICS = (_MAGIC, _MAGIC_JSON)
_SUFFIX = ".seg"
_CURSOR = "cursor.json"
_FIRST_SEQ = 10**12  # room below for prepend()


@dataclass(slots=True)
class SpoolRecord:
    """One stored batch handed out by ``read()``; pass it back to ``ack()``."""

    seq: int
    start: int
    end: int
    lines: list[str]

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(slots=True)
class Dropped:
    """What an append dropped to stay under the bound (oldest data)."""

    lines: int = 0
    bytes: int = 0
    segments: int = 0
    content: list[str] = field(default_factory=list)  # the dropped lines that could be read

    def __bool__(self) -> bool:
        return self.lines > 0 or self.bytes > 0


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    size: int = 0  # valid bytes
    lines: int = 0  # lines in the valid bytes
    acked: int = 0  # every record before this offset is delivered
    acked_lines: int = 0  # lines before ``acked``
    # start -> (end, lines) acked past ``acked``
    done: dict[int, tuple[int, int]] = field(default_factory=dict)
    read: int = 0  # next record to hand out
    read_lines: int = 0  # lines handed out so far (counting acked ones)
    sealed: bool = True

    @property
    def unread_lines(self) -> int:
        return self.lines - self.read_lines


class Spool:
    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        seal: Callable[[int], object] | None = None,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("spool bounds must be positive")
        self.directory = private_dir(directory, tighten=True)  # the spool's own
        self.max_bytes = max_bytes
        # segments are the unit of dropping: keep several under the bound
        self.segment_bytes = max(1, min(segment_bytes, max_bytes // 4))
        self._seal_fd = seal or fsync_close
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # write fd of the last segment when open for appends
        self._read_fds: dict[int, int] = {}
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.corrupt_bytes = 0
        self._closed = False
        self._open()

    # -- state ----------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        """Bytes of every segment on disk (delivered parts of the first included)."""
        return sum(s.size for s in self._segments)

    @property
    def pending_bytes(self) -> int:
        """Bytes not yet acknowledged."""
        return sum(s.size - s.acked - sum(e - st for st, (e, _) in s.done.items()) for s in self._segments)

    @property
    def pending_lines(self) -> int:
        """Lines not yet acknowledged (handed out or not)."""
        return sum(s.lines - s.acked_lines - sum(n for _, n in s.done.values()) for s in self._segments)

    @property
    def unread_lines(self) -> int:
        """Lines ``read()`` has not handed out yet."""
        return sum(s.unread_lines for s in self._segments)

    def has_unread(self) -> bool:
        return any(s.read < s.size for s in self._segments)

    def __len__(self) -> int:
        return self.pending_lines

    # -- open / close -------------------------------------------------------

    def _open(self) -> None:
        cursor = self._load_cursor()
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            if path.is_symlink() or not path.is_file():
                log.warning("spool %s: %s is not a regular file; left alone", self.directory, path.name)
                continue
            seg = _Segment(seq=seq, path=path)
            self._scan(seg)
            acked, done = cursor.get(seq, (0, []))
            self._apply_cursor(seg, acked, done)
            if seg.acked >= seg.size:
                path.unlink(missing_ok=True)
                continue
            self._segments.append(seg)
        if self.pending_lines:
            log.info("spool %s: %d lines (%d bytes) waiting from before", self.directory,
                     self.pending_lines, self.pending_bytes)
        self._save_cursor()

    def _scan(self, seg: _Segment) -> None:
        """Count valid records; cut a torn or corrupt tail."""
        fd = open_private(seg.path, os.O_RDWR)  # 0600 also for a file an older version made
        try:
            data = _read_all(fd)
            pos = self._valid_prefix(data)
            if pos < len(data):
                self.corrupt_bytes += len(data) - pos
                log.warning("spool segment %s: cut %d bytes of torn or corrupt records at offset %d",
                            seg.path.name, len(data) - pos, pos)
                os.ftruncate(fd, pos)
                os.fsync(fd)
        finally:
            os.close(fd)
        seg.size = pos
        seg.lines = self._lines_in(data[:pos])

    @staticmethod
    def _valid_prefix(data: bytes) -> int:
        pos = 0
        while pos + _HEADER.size <= len(data):
            magic, length, n, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if magic not in _MAGICS or end > len(data) or zlib.crc32(data[pos + _HEADER.size : end]) != crc:
                break
            pos = end
        return pos

    @staticmethod
    def _lines_in(data: bytes) -> int:
        pos = lines = 0
        while pos < len(data):
            _, length, n, _ = _HEADER.unpack_from(data, pos)
            pos += _HEADER.size + length
            lines += n
        return lines

    def _apply_cursor(self, seg: _Segment, acked: int, done: list) -> None:
        """Skip what the cursor says was delivered (by walking the headers)."""
        done_starts = {int(s): int(e) for s, e in done}
        pos = 0
        fd = open_private(seg.path, os.O_RDONLY)
        try:
            while pos < seg.size:
                _, length, n, _ = _HEADER.unpack(os.pread(fd, _HEADER.size, pos))
                end = pos + _HEADER.size + length
                if pos < acked and end <= acked:
                    seg.acked = end
                    seg.acked_lines += n
                elif done_starts.get(pos) == end:
                    seg.done[pos] = (end, n)
                pos = end
        finally:
            os.close(fd)
        self._advance_ack(seg)
        seg.read = seg.acked
        seg.read_lines = seg.acked_lines

    def _load_cursor(self) -> dict[int, tuple[int, list]]:
        path = self.directory / _CURSOR
        try:
            fd = open_private(path, os.O_RDONLY)
            try:
                raw = json.loads(_read_all(fd))
            finally:
                os.close(fd)
            return {int(k): (int(v["acked"]), v.get("done", [])) for k, v in raw.get("segments", {}).items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            log.warning("spool %s: unreadable cursor, replaying every segment from its start", self.directory)
            return {}

    def _save_cursor(self) -> None:
        segments = {
            str(s.seq): {"acked": s.acked, "done": [[st, e] for st, (e, _) in sorted(s.done.items())]}
            for s in self._segments
            if s.acked or s.done
        }
        write_private(self.directory / _CURSOR, json.dumps({"segments": segments}).encode(), sync=False)

    def close(self) -> None:
        """Seal the segment being written (fsync) and save the cursor."""
        if self._closed:
            return
        self._seal(final=True)
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()
        self._save_cursor()
        self._closed = True

    # -- writing --------------------------------------------------------------

    def append(self, lines: list[str]) -> Dropped:
        """Store a batch at the end; drop the oldest segments first if the bound
        needs it (a batch larger than the bound itself is dropped)."""
        self._check_open()
        record = _record(lines)
        size = len(record)
        dropped = Dropped()
        if size > self.max_bytes:
            dropped.lines += len(lines)
            dropped.content.extend(lines)
            dropped.bytes += size
            self._count_drop(dropped)
            return dropped
        tail = self._segments[-1] if self._segments else None
        if self._fd is not None and tail is not None and tail.size and tail.size + size > self.segment_bytes:
            self._seal()
        while self._segments and self.disk_bytes + size > self.max_bytes:
            self._drop_oldest(dropped)
        if self._fd is None:
            self._new_tail()
        fd = self._fd
        assert fd is not None  # opened by _new_tail
        seg = self._segments[-1]
        _write_all(fd, record)
        seg.size += size
        seg.lines += len(lines)
        self._count_drop(dropped)
        return dropped

    def prepend(self, batches: list[list[str]]) -> None:
        """Store batches before everything already spooled, in the given order,
        in a new sealed segment (fsynced before returning)."""
        self._check_open()
        batches = [b for b in batches if b]
        if batches:
            self._front_segment(batches)

    def persist(self, lines: list[str]) -> SpoolRecord:
        """Store a batch that is being delivered already (so ``read()`` does not
        hand it out): before everything, in its own sealed segment, fsynced.
        ``ack`` the record once delivered; after a crash it is replayed first."""
        self._check_open()
        seg = self._front_segment([lines])
        seg.read, seg.read_lines = seg.size, seg.lines
        return SpoolRecord(seq=seg.seq, start=0, end=seg.size, lines=lines)

    def _front_segment(self, batches: list[list[str]]) -> _Segment:
        seq = (self._segments[0].seq if self._segments else _FIRST_SEQ) - 1
        seg = _Segment(seq=seq, path=self.directory / f"{seq:020d}{_SUFFIX}")
        fd = open_private(seg.path, os.O_WRONLY, exclusive=True)
        try:
            for lines in batches:
                record = _record(lines)
                _write_all(fd, record)
                seg.size += len(record)
                seg.lines += len(lines)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._segments.insert(0, seg)
        return seg

    def _new_tail(self) -> None:
        seq = self._segments[-1].seq + 1 if self._segments else _FIRST_SEQ
        while os.path.lexists(self.directory / f"{seq:020d}{_SUFFIX}"):  # a file left alone at open
            seq += 1
        seg = _Segment(seq=seq, path=self.directory / f"{seq:020d}{_SUFFIX}", sealed=False)
        self._fd = open_private(seg.path, os.O_WRONLY | os.O_APPEND, exclusive=True)
        self._segments.append(seg)

    def _seal(self, final: bool = False) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        tail = self._segments[-1]
        tail.sealed = True
        (fsync_close if final else self._seal_fd)(fd)  # at close, synced before returning
        if tail.acked >= tail.size:
            self._remove(tail)

    def _drop_oldest(self, dropped: Dropped) -> None:
        seg = self._segments[0]
        if not seg.sealed:
            self._seal()
            if not self._segments or self._segments[0] is not seg:
                return  # it was fully delivered and is gone already
        dropped.lines += seg.unread_lines
        dropped.bytes += seg.size - seg.read
        dropped.segments += 1
        dropped.content.extend(self._unread_content(seg))
        self._remove(seg)
        self._save_cursor()

    def _unread_content(self, seg: _Segment) -> list[str]:
        """The lines of the records not handed out yet (stops at a bad one)."""
        out: list[str] = []
        if seg.read >= seg.size:
            return out
        fd = self._read_fd(seg)
        data = os.pread(fd, seg.size - seg.read, seg.read)
        pos = 0
        while pos + _HEADER.size <= len(data):
            magic, length, n, crc = _HEADER.unpack_from(data, pos)
            payload = data[pos + _HEADER.size:pos + _HEADER.size + length]
            if magic not in _MAGICS or len(payload) != length or zlib.crc32(payload) != crc:
                break
            out.extend(_lines(magic, payload, n))
            pos += _HEADER.size + length
        return out

    def _remove(self, seg: _Segment) -> None:
        fd = self._read_fds.pop(seg.seq, None)
        if fd is not None:
            os.close(fd)
        seg.path.unlink(missing_ok=True)
        self._segments.remove(seg)

    def _count_drop(self, dropped: Dropped) -> None:
        if dropped:
            self.dropped_lines += dropped.lines
            self.dropped_bytes += dropped.bytes

    # -- reading --------------------------------------------------------------

    def read(self) -> SpoolRecord | None:
        """The next batch not handed out yet, oldest first; None when none."""
        self._check_open()
        for seg in self._segments:
            while seg.read < seg.size:
                if seg.read < seg.acked:  # acknowledged meanwhile (out of order, then the gap)
                    seg.read, seg.read_lines = seg.acked, seg.acked_lines
                    continue
                start = seg.read
                if start in seg.done:  # acknowledged out of order
                    end, n = seg.done[start]
                    seg.read, seg.read_lines = end, seg.read_lines + n
                    continue
                fd = self._read_fd(seg)
                header = os.pread(fd, _HEADER.size, start)
                magic, length, n, crc = _HEADER.unpack(header)
                payload = os.pread(fd, length, start + _HEADER.size)
                end = start + _HEADER.size + length
                seg.read, seg.read_lines = end, seg.read_lines + n
                if magic not in _MAGICS or len(payload) != length or zlib.crc32(payload) != crc:
                    # scanned at open and written by us since: only a disk fault gets here
                    log.error("spool segment %s: corrupt record at %d, skipping the segment",
                              seg.path.name, start)
                    self.corrupt_bytes += seg.size - start
                    self.dropped_lines += seg.lines - seg.read_lines + n
                    seg.read, seg.read_lines = seg.size, seg.lines
                    break
                lines = _lines(magic, payload, n)
                return SpoolRecord(seq=seg.seq, start=start, end=end, lines=lines)
        return None

    def _read_fd(self, seg: _Segment) -> int:
        fd = self._read_fds.get(seg.seq)
        if fd is None:
            fd = self._read_fds[seg.seq] = open_private(seg.path, os.O_RDONLY)
        return fd

    def ack(self, record: SpoolRecord) -> None:
        """Mark a record delivered; a sealed segment delivered to its end is deleted."""
        seg = next((s for s in self._segments if s.seq == record.seq), None)
        if seg is None or record.start < seg.acked or record.start in seg.done:
            return  # dropped for the bound meanwhile, or acknowledged already
        seg.done[record.start] = (record.end, len(record.lines))
        self._advance_ack(seg)
        if seg.sealed and seg.acked >= seg.size:
            self._remove(seg)
        if not self._closed:
            self._save_cursor()

    @staticmethod
    def _advance_ack(seg: _Segment) -> None:
        while seg.acked in seg.done:
            end, n = seg.done.pop(seg.acked)
            seg.acked = end
            seg.acked_lines += n

    def unread_all(self) -> None:
        """Hand out again every record not acknowledged (after the consumer lost them)."""
        for seg in self._segments:
            seg.read = seg.acked
            seg.read_lines = seg.acked_lines

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("spool is closed")


def _record(lines: list[str]) -> bytes:
    """A record of ``lines``: newline-joined unless a line holds a newline
    (then a JSON list).  Text that is not valid UTF-8 (lone surrogates) is
    replaced, as the sink does on the wire."""
    payload = "\n".join(lines).encode("utf-8", "replace")
    magic = _MAGIC
    if lines and payload.count(b"\n") != len(lines) - 1:
        magic = _MAGIC_JSON
        payload = json.dumps(lines, ensure_ascii=False).encode("utf-8", "replace")
    return _HEADER.pack(magic, len(payload), len(lines), zlib.crc32(payload)) + payload


def _lines(magic: bytes, payload: bytes, n: int) -> list[str]:
    if not n:
        return []
    if magic == _MAGIC_JSON:
        return [str(line) for line in json.loads(payload)]
    return payload.decode("utf-8", "replace").split("\n")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_close(fd: int) -> None:
    """fsync and close a segment's descriptor (the default ``seal``)."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
