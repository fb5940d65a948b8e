"""The agent's core: eventlog runs in, monitor messages out to every output.

``Agent`` is the ``Opener`` the agent's source (``ingest/sources``: fifo,
socket, followed file, stdin, with their reading rules: the pipe kept open,
a run per header, resync mid-stream) is given: each run of the program is a
``Run``, whose bytes go through a ``protocol.monitor.Encoder`` (header,
blocks of events, state fold).  Every unit of messages the encoder makes
goes to each output (``TcpOut``, ``UdpOut``) at once; an output never
blocks the core (each one bounds what it holds and drops a receiver or a
datagram beyond), so the source always reads on and the program never
waits on its pipe.

``Counters`` are the agent's figures (logged on SIGUSR1 and at exit).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import IO, Protocol

from protocol.monitor import (
    EncodeError,
    Encoder,
    EventMessage,
    Full,
    agent_capset,
    encode_message,
    program_name,
)

from ..sources.base import StreamInfo

log = logging.getLogger("liveprof.agent")

# the end of a run (docs/monitor-protocol.md 7.4): the eventlog's end-of-data
# marker as an event payload, what a 2016 receiver's parser also takes as the end
END_BODY = encode_message(EventMessage(Full(b"\xff\xff")))


@dataclass
class Counters:
    runs: int = 0                 # eventlog runs (program starts) read
    bytes: int = 0                # eventlog bytes read
    events: int = 0               # events sent on (into the outputs)
    blocks: int = 0
    bad_runs: int = 0             # runs that were not valid eventlogs, or were cut short
    receivers: int = 0            # TCP receivers connected now
    receivers_total: int = 0      # TCP receivers that ever connected
    receivers_dropped: int = 0    # disconnected: their queue overflowed
    receivers_refused: int = 0    # turned away: too many connected
    tcp_bytes: int = 0            # bytes handed to TCP receivers
    datagrams: int = 0            # datagrams sent (each copy counted)
    datagrams_dropped: int = 0    # not sent: socket buffer full
    send_errors: int = 0          # sends refused (collector down, no route)
    snapshots: int = 0            # snapshots + headers sent (TCP joins, datagram repeats)

    def line(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in asdict(self).items())


class Output(Protocol):
    def run_started(self, run: Run) -> None:
        """A run's header is known: receivers may join it."""

    def unit(self, bodies: list[bytes]) -> None:
        """Message bodies to send, in order; never blocks."""

    def run_ended(self, run: Run) -> None:
        """The run is over (its last units were given)."""


class Run:
    """One eventlog run: the source's stream consumer."""

    def __init__(self, agent: Agent, info: StreamInfo):
        self.agent = agent
        self.info = info
        self.encoder = Encoder(max_size=agent.max_size, blocks=agent.blocks)
        self.started = False
        self.failed: str | None = None

    @property
    def header(self) -> list[bytes]:
        return self.encoder.header or []

    def snapshot(self) -> list[bytes]:
        """The snapshot (with the agent's identity) and the header's bodies."""
        agent = self.agent
        ident = agent_capset(agent.app, agent.host, program_name(self.encoder.fold.state),
                             agent.version)
        agent.counters.snapshots += 1
        return self.encoder.snapshot([ident]) + self.header

    def data(self, chunk: bytes) -> None:
        agent = self.agent
        agent.counters.bytes += len(chunk)
        if agent.tee is not None:
            agent.tee.write(chunk)
        if self.failed:
            return
        try:
            units = self.encoder.feed(chunk)
        except EncodeError as exc:
            units = getattr(exc, "units", [])
            self._bad(exc)
        self._send(units)

    def _bad(self, exc: EncodeError) -> None:
        self.failed = str(exc)
        self.agent.counters.bad_runs += 1
        log.error("%s: not a valid eventlog: %s; the rest of this run is not sent",
                  self.info.name, exc)

    def end(self, error: str | None) -> None:
        agent = self.agent
        if agent.tee is not None:
            agent.tee.flush()
        if not self.failed:
            try:
                units = self.encoder.close()
            except EncodeError as exc:
                units = getattr(exc, "units", [])
                self._bad(exc)
            self._send(units)
        if error and not self.failed:
            agent.counters.bad_runs += 1       # cut short: its program was killed, or the input
        enc = self.encoder
        log.info("%s: run ended: %d events in %d blocks%s", self.info.name, enc.events,
                 enc.block_count, f" ({error or self.failed})" if error or self.failed else "")
        if self.started:
            if enc.ended and not self.failed:     # the program ended its eventlog
                for out in agent.outputs:
                    out.unit([END_BODY])
            for out in agent.outputs:
                out.run_ended(self)
        if agent.current is self:
            agent.current = None

    def _send(self, units: list[list[bytes]]) -> None:
        agent = self.agent
        if not self.started and self.encoder.header is not None:
            self.started = True
            log.info("%s: run started: %d event types", self.info.name, len(self.header) - 1)
            for out in agent.outputs:
                out.run_started(self)
        for unit in units:
            for out in agent.outputs:
                out.unit(unit)
        agent.counters.events = agent.events_before + self.encoder.events
        agent.counters.blocks = agent.blocks_before + self.encoder.block_count


class Agent:
    """The ``Opener`` of the agent's source; fans each run out to the outputs."""

    def __init__(self, outputs: Sequence[Output], *, app: str | None = None,
                 host: str | None = None, max_size: int | None = None, blocks: bool = True,
                 tee: IO[bytes] | None = None, version: str = ""):
        self.outputs = list(outputs)
        self.app = app
        self.host = host or socket.gethostname()
        self.max_size = max_size
        self.blocks = blocks
        self.tee = tee
        self.version = version
        self.counters = Counters()
        self.current: Run | None = None
        self.events_before = 0          # events of the runs before the current one
        self.blocks_before = 0

    def __call__(self, info: StreamInfo) -> Run:
        if self.current is not None:         # (the source ends a run before the next)
            self.current.end("a new run began")
        self.events_before = self.counters.events
        self.blocks_before = self.counters.blocks
        self.counters.runs += 1
        self.current = Run(self, info)
        return self.current
