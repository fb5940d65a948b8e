"""Helpers for the receiver tests: collect what liveprof's monitor sources
deliver, and the reference dump of a log as a monitor session delivers it."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

from protocol import DecodeError, Decoder, event_json
from tests.corpus import reference_lines
from tests.protocol.test_reference import REFERENCE_WRONG

CAP = re.compile(r'^(\{"t":\d+,"cap":)(-?\d+|null)')


def reference_without_caps(log) -> list[str]:
    """The reference dump with block markers removed and ``cap`` null.

    Where ghc-events is known to misread a type (tests/protocol/
    test_reference.py checks our reading against its upstream text instead),
    those lines are our own decoding of the file."""
    lines = [CAP.sub(r"\1null", line) for line in reference_lines(log)
             if '"type":"EventBlock"' not in line[:60]]
    wrong = REFERENCE_WRONG.get(log.name[:-len(".eventlog")])
    if wrong:
        ours = [e for e in Decoder().feed(log.read_bytes()) if e.type != 18]
        assert len(ours) == len(lines)
        lines = [CAP.sub(r"\1null", event_json(e)) if e.type in wrong else line
                 for e, line in zip(ours, lines)]
    return lines


@dataclass
class Collected:
    info: object
    lines: list[str] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    error: str | None = None
    decode_error: str | None = None


class Collector:
    """An ``Opener`` that decodes each stream and keeps its JSON lines."""

    def __init__(self):
        self.streams: list[Collected] = []
        self.changed = asyncio.Event()

    def __call__(self, info):
        c = Collected(info)
        decoder = Decoder()
        self.streams.append(c)
        collector = self

        class Consumer:
            def data(self, chunk: bytes) -> None:
                c.data += chunk
                try:
                    events = decoder.feed(chunk)
                except DecodeError as exc:
                    events, c.decode_error = exc.events, str(exc)
                c.lines += [event_json(e) for e in events]
                collector.changed.set()

            def end(self, error):
                assert not c.ended, "a stream ended twice"
                c.ended, c.error = True, error
                collector.changed.set()

        return Consumer()

    @property
    def lines(self) -> list[str]:
        return [line for s in self.streams for line in s.lines]

    async def wait(self, predicate, timeout: float = 30.0) -> None:
        async def loop():
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)


def kernel_udp_drops() -> int:
    """Datagrams the kernel dropped for want of room in a socket's receive buffer
    (RcvbufErrors in /proc/net/snmp, all sockets of the host).  A listener stalled
    by a busy machine loses datagrams there, before liveprof sees them: tests that
    require a complete session check this did not happen while they sent."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("RcvbufErrors")])


def assert_complete_unless_dropped(lines: list[str], log, drops: int, check) -> None:
    """``check(lines, log)`` (a complete session) when the kernel dropped no
    datagram meanwhile; else at least what it delivered is right, and most of it."""
    if drops == 0:
        check(lines, log)
        return
    want = reference_without_caps(log)
    assert set(lines) <= set(want)
    assert len(lines) > 0.9 * len(want), f"{len(lines)} of {len(want)} events ({drops} " \
                                         f"datagrams dropped by the kernel)"
