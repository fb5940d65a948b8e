"""The agent with its TCP receivers, and restarted, next to a real program.

* A receiver that connects mid-run gets the state snapshot (the program's
  threads, capsets and the agent's identity), the header, then the events
  from that moment on: exactly the program's events from a block boundary.
* A receiver that never reads is dropped once its queue is full; the
  program runs on and another receiver gets every event; one receiver over
  the bound is turned away.
* The agent stopped and started again while the program runs: the new one
  reads the pipe (the program is not held), skips the run it cannot know the
  header of, and serves the program's next run whole.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from protocol import Decoder, EventType
from protocol.monitor import (
    FrameReader,
    Session,
    StateMessage,
    agent_identity,
    decode_message,
)
from tests.agent.helpers import AgentProcess, livesim_binary, start_livesim

BLOCK = int(EventType.BLOCK_MARKER)


@pytest.fixture(scope="module")
def livesim():
    return livesim_binary()


class Receiver(threading.Thread):
    """A TCP receiver of the agent: reads every byte until EOF (or, ``stuck``,
    connects with a tiny buffer and never reads)."""

    def __init__(self, port: int, stuck: bool = False):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if stuck:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.stuck = stuck
        self.reset = False
        self.data = bytearray()
        self.start()

    def run(self) -> None:
        if self.stuck:
            return
        try:
            while chunk := self.sock.recv(1 << 16):
                self.data += chunk
        except ConnectionResetError:      # turned away (abort)
            self.reset = True

    def messages(self) -> list:
        return [decode_message(b) for _, b in FrameReader().feed(bytes(self.data))]


def events_of(data: bytes) -> list[tuple]:
    """(type, time, cap, fields) of every event but the block markers."""
    return [(e.type, e.time, e.cap, e.fields) for e in Decoder().feed(data) if e.type != BLOCK]


def received(messages: list) -> list[tuple]:
    s = Session()
    return events_of(s.receive_all(messages) + b"\xff\xff")


def test_a_receiver_that_joins_mid_run(livesim, tmp_path):
    fifo, tee = tmp_path / "f", tmp_path / "tee.eventlog"
    agent = AgentProcess("--fifo", str(fifo), "--listen", "127.0.0.1:0", "--tee", str(tee))
    try:
        port = agent.port
        agent.wait_line("waiting for an eventlog")
        program = start_livesim(livesim, fifo, 3)
        agent.wait_line("run started")
        time.sleep(1.2)
        late = Receiver(port)
        assert program.wait(60) == 0
        agent.wait_line("run ended")
        late.join(20)
    finally:
        assert agent.stop() == 0
    messages = late.messages()
    assert isinstance(messages[0], StateMessage)
    first = Session()
    first.receive(messages[0])
    state = first.state
    assert state is not None and len(state.threads) >= 5 and state.caps
    assert agent_identity(state) == {"host": socket.gethostname(), "blocks": "1",
                                     "program": "LiveSim"}
    got, whole = received(messages), events_of(tee.read_bytes())
    assert 0 < len(got) < len(whole) - 1000
    assert got == whole[len(whole) - len(got):]      # the events from that moment on, exactly


def test_a_stuck_receiver_is_dropped_and_the_others_get_everything(livesim, tmp_path):
    fifo, tee = tmp_path / "f", tmp_path / "tee.eventlog"
    agent = AgentProcess("--fifo", str(fifo), "--listen", "127.0.0.1:0", "--tee", str(tee),
                         "--queue-bytes", "200000", "--max-receivers", "2")
    try:
        port = agent.port
        stuck, good = Receiver(port, stuck=True), Receiver(port)
        agent.wait_line(r"receiver .* connected", n=2)
        third = Receiver(port)          # one too many: turned away at once
        third.join(10)
        assert not third.is_alive() and not third.data
        started = time.monotonic()
        program = start_livesim(livesim, fifo, 4)
        assert program.wait(60) == 0
        took = time.monotonic() - started
        agent.wait_line(r"receiver .* dropped: its queue is over 200000 bytes")
        agent.wait_line("run ended")
        good.join(20)
        agent.proc.send_signal(10)     # SIGUSR1: the counters
        line = agent.wait_line("counters:")
    finally:
        assert agent.stop() == 0
        stuck.sock.close()
    assert took < 4 + 3, took        # the program was not held (4 s of work)
    assert "receivers dropped 1" in line and "receivers total 2" in line
    assert "receivers refused 1" in line
    assert received(good.messages()) == events_of(tee.read_bytes())


def test_the_agent_restarted_while_the_program_runs(livesim, tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    first = AgentProcess("--fifo", str(fifo), "--listen", "127.0.0.1:0")
    first.wait_line("waiting for an eventlog")
    program = start_livesim(livesim, fifo, 3)
    try:
        first.wait_line("run started")
        time.sleep(0.8)
    finally:
        assert first.stop() == 0
    tee = tmp_path / "tee.eventlog"
    second = AgentProcess("--fifo", str(fifo), "--listen", "127.0.0.1:0", "--tee", str(tee))
    try:
        port = second.port
        assert program.wait(60) == 0      # the new agent drains the pipe: no stall
        second.wait_line(r"skipped \d+ bytes|waiting for an eventlog")
        receiver = Receiver(port)
        second.wait_line(r"receiver .* connected")
        again = start_livesim(livesim, fifo, 1)
        assert again.wait(60) == 0
        second.wait_line("run ended")
        receiver.join(20)
    finally:
        assert second.stop() == 0
    assert second.count("run started") == 1       # the cut run is skipped, the next served
    whole = tee.read_bytes()
    run2 = whole[whole.index(b"hdrbhetb"):]
    got = received(receiver.messages())
    assert got == events_of(run2) and len(got) > 1000
