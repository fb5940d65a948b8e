"""Wall-clock anchoring: from eventlog time (ns since RTS start) to Unix time.

``WallClockTime`` (type 43: capset, sec, nsec) is the wall clock sampled at the
event's own eventlog time ``t0``; then ``unix(t) = sec * 1e9 + nsec + (t - t0)``.

A log may have none (a killed program loses its global buffer, where the event
sits; GHC < 9.2 writes that buffer only at exit, so a live stream sees it only
at the end).  Then the caller supplies ``fallback_start_ns``, the Unix time
taken as eventlog time 0: for a file, its modification time minus the last
event time (the RTS wrote the file last at about its last event); for a live
stream, the time the stream was received.  Without one, eventlog time 0 is the
Unix epoch.  See docs/schema.md.
"""

from __future__ import annotations

from protocol import EventType

WALL_CLOCK_TIME = int(EventType.WALL_CLOCK_TIME)
MAX_UNIX_NS = 1 << 62  # year 2116; InfluxDB takes up to 2262 (a WallClockTime past it is corrupt)


class Clock:
    def __init__(self, fallback_start_ns: int | None = None):
        self.fallback_start_ns = fallback_start_ns
        self.offset: int | None = None  # unix = t + offset, once decided
        self.source: str | None = None  # "wall_clock_event" | "fallback"
        self.wall_clock: tuple[int, int, int] | None = None  # (t, sec, nsec) of the event used

    @property
    def anchored(self) -> bool:
        return self.offset is not None

    def observe(self, ev) -> bool:
        """Take a WallClockTime event; True if it anchored the clock (the first
        one does; later ones are ignored: time must not jump; so is one too
        short to carry the time, or one past ``MAX_UNIX_NS``)."""
        if self.offset is not None or len(ev.fields) < 3:
            return False
        sec, nsec = ev.fields[1], ev.fields[2]
        if sec * 1_000_000_000 + nsec >= MAX_UNIX_NS:  # corrupt: no point could be written
            return False
        self.wall_clock = (ev.time, sec, nsec)
        self.offset = sec * 1_000_000_000 + nsec - ev.time
        self.source = "wall_clock_event"
        return True

    def fall_back(self) -> None:
        """Commit to the fallback (no usable WallClockTime)."""
        if self.offset is None:
            self.offset = self.fallback_start_ns or 0
            self.source = "fallback"

    def unix(self, t: int) -> int:
        offset = self.offset
        if offset is None:
            raise ValueError("clock not anchored: observe() a WallClockTime or fall_back() first")
        return t + offset
