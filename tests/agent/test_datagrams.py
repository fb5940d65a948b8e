"""A real GHC program -> ``liveprof agent --send`` -> datagrams -> ``liveprof
serve --udp`` -> a real influxd.

With no loss (each datagram sent twice, HMAC-tagged, while strangers send
the collector garbage and badly tagged datagrams) the database holds exactly
what ``liveprof import`` of the same bytes writes.  Through a relay
that drops 1% of the datagrams, what is missing is counted by the collector
and everything else is exact: the database equals an import of the bytes
with the lost events taken out, worked out from the datagrams the relay let
through (a block whose header was lost gives no capability: its events are
dropped; any other lost event is that event alone).  ``rp_config`` (serve's
own bookkeeping) is set aside, as in test_tcp.py; nothing else is."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time

import pytest

from ingest.sources.monitor_udp import MonitorUdpSource
from protocol.monitor import (
    BlockHeader,
    BlockPart,
    Encoder,
    Full,
    HeaderLength,
    Part,
    SplitHeader,
    datagram_key,
    decode_datagram,
    decode_message,
    encode_message,
    sign_datagram,
    verify_datagram,
)
from tests.agent.helpers import (
    AgentProcess,
    contents,
    livesim_binary,
    run_import,
    serve_settings,
    start_livesim,
    start_service,
    stop_service,
    wait_finished,
)
from tests.agent.relay import LossyRelay
from tests.monitor.test_cli_monitor import free_udp_port

SECONDS = 3
SECRET = "agent-test-secret-0123456789"


@pytest.fixture(scope="module")
def livesim():
    return livesim_binary()


def strangers(port: int, stop: threading.Event) -> None:
    """Bad datagrams from other senders at the collector: random bytes, a
    valid message with no tag or a wrong one, a tag of another secret."""
    rng = random.Random(7)
    body = encode_message(HeaderLength(3))
    other = datagram_key("not-the-secret-at-all")
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        while not stop.is_set():
            for sock in socks:
                for d in (rng.randbytes(rng.randrange(1, 200)), body, body + bytes(16),
                          sign_datagram(body, other)):
                    sock.sendto(d, ("127.0.0.1", port))
            time.sleep(0.01)
    finally:
        for sock in socks:
            sock.close()


async def run_udp(livesim, influxd, database, tmp_path, *, relay_loss=None, agent_args=(),
                  noise=False):
    fifo, tee = tmp_path / "live.fifo", tmp_path / "tee.eventlog"
    port = free_udp_port()
    (tmp_path / "secret").write_text(SECRET + "\n")
    settings = serve_settings(influxd, database, tmp_path, monitor_udp={
        "host": "127.0.0.1", "port": port, "idle_timeout": 1.5, "secret": SECRET})
    service, task = await start_service(settings)
    relay = LossyRelay(("127.0.0.1", port), relay_loss) if relay_loss is not None else None
    target = relay.port if relay else port
    try:
        if relay:
            relay.__enter__()
        agent = AgentProcess("--fifo", str(fifo), "--no-listen", "--send", f"127.0.0.1:{target}",
                             "--secret-file", str(tmp_path / "secret"), "--tee", str(tee),
                             "--repeat", "0.5", *agent_args)
        stop = threading.Event()
        noisy = threading.Thread(target=strangers, args=(port, stop), daemon=True)
        try:
            await agent.await_line(r"sending datagrams")
            program = start_livesim(livesim, fifo, SECONDS)
            if noise:
                noisy.start()
            _, err = await asyncio_communicate(program)
            stop.set()
            assert program.returncode == 0, err
            await agent.await_line(r"run ended")
            await wait_finished(service, 1)
        finally:
            stop.set()
            assert agent.stop() == 0
    finally:
        if relay:
            relay.__exit__(None, None, None)
        await stop_service(service, task)
    assert service.registry is not None
    (record,) = service.registry.finished.values()
    (udp,) = [s for s in service.sources if isinstance(s, MonitorUdpSource)]
    (summary,) = list(udp.sessions.ended)
    return record, summary, tee, relay, udp


async def asyncio_communicate(proc):
    return await asyncio.to_thread(proc.communicate, timeout=120)


async def test_datagrams_without_loss_equal_import(livesim, influxd, tmp_path):
    record, summary, tee, _, udp = await run_udp(livesim, influxd, "agent_udp", tmp_path,
                                                 agent_args=("--redundancy", "2"), noise=True)
    assert record.error is None and record.info.caps is True
    # the strangers were refused, and cost the agent's session nothing
    totals = udp.totals()
    assert totals["unauthenticated"] > 100 and totals["streams"] == 1
    assert summary["duplicate_events"] > 0 and summary["block_events_missing"] == 0
    assert summary["unauthenticated"] == 0 and summary["blocks_incomplete"] == 0
    run_import(influxd, "agent_udp_import", tee, tmp_path)
    live, whole = contents(influxd, "agent_udp"), contents(influxd, "agent_udp_import")
    live.pop("rp_config")
    whole.pop("rp_config", None)
    assert set(live) == set(whole) and {"capability", "sparks"} <= set(live)
    for name in sorted(whole):
        assert live[name] == whole[name], name


def record_of(body: bytes) -> bytes:
    msg = decode_message(body)
    assert isinstance(msg, BlockPart) and isinstance(msg.payload, Full)
    return msg.payload.data


def survivors(tee: bytes, dropped: list[bytes]) -> tuple[bytes, int, int]:
    """The eventlog the collector should rebuild when the ``dropped``
    datagrams are lost, the events lost, and those of them no one can count
    (parts of a block whose header was lost too)."""
    key = SECRET.encode()
    lost_headers, lost_parts, lost_split = set(), set(), set()
    for d in dropped:
        msgs, error = decode_datagram(verify_datagram(d, key))
        assert error is None and msgs
        for msg in msgs:     # (packed: all of them lost)
            if isinstance(msg, BlockHeader):
                lost_headers.add(msg.block_id)
            elif isinstance(msg, BlockPart) and isinstance(msg.payload, Full):
                lost_parts.add((msg.block_id, msg.payload.data))
            elif isinstance(msg, BlockPart) and isinstance(msg.payload, (Part, SplitHeader)):
                lost_split.add(msg.block_id)    # (rare: an event over 1200 bytes)
    enc = Encoder()
    units = enc.feed(tee) + enc.close()
    head = tee[:tee.index(b"datb") + 4]
    out, lost, uncounted = [head], 0, 0
    for unit in units:
        h = decode_message(unit[0])
        assert isinstance(h, BlockHeader) and h.block_id not in lost_split
        records = [record_of(b) for b in unit[1:]]
        kept = [r for r in records if (h.block_id, r) not in lost_parts]
        if h.block_id in lost_headers:
            lost += len(records)
            uncounted += len(records) - len(kept)
            continue
        lost += len(records) - len(kept)
        size = 24 + sum(map(len, kept))
        out.append(struct.pack(">HQIQH", 18, h.begin, size, h.end,
                               0xFFFF if h.cap is None else h.cap))
        out += kept
    return b"".join(out) + b"\xff\xff", lost, uncounted


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "no-pack"])
async def test_one_percent_loss_is_counted_and_the_rest_exact(livesim, influxd, tmp_path, pack):
    db = "agent_loss" if pack else "agent_loss_unpacked"
    record, summary, tee, relay, _ = await run_udp(livesim, influxd, db, tmp_path,
                                                   relay_loss=0.01,
                                                   agent_args=() if pack else ("--no-pack",))
    assert relay is not None
    messages = [len(decode_datagram(verify_datagram(d, SECRET.encode()))[0])
                for d in relay.dropped]
    if pack:     # fewer datagrams, several messages in most
        assert len(relay.dropped) >= 3 and relay.forwarded > 300 and max(messages) > 10
    else:
        assert len(relay.dropped) > 50 and relay.forwarded > 5000 and set(messages) == {1}
    assert record.error is None and record.info.caps is True
    expected, lost, uncounted = survivors(tee.read_bytes(), relay.dropped)
    assert lost > 0
    counted = summary["block_events_missing"] + summary["block_events_orphaned"]
    assert counted + uncounted == lost
    (tmp_path / "expected.eventlog").write_bytes(expected)
    run_import(influxd, f"{db}_import", tmp_path / "expected.eventlog", tmp_path)
    live, whole = contents(influxd, db), contents(influxd, f"{db}_import")
    live.pop("rp_config")
    whole.pop("rp_config", None)
    assert set(live) == set(whole) and "capability" in live
    for name in sorted(whole):
        assert live[name] == whole[name], name
