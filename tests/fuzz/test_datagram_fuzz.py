"""Fuzzing a running UDP listener (real loopback sockets): mutated datagrams
of real logs and random bytes from several addresses, the item-10 attacks
among them, while a good sender on 127.0.0.1 streams a real log.  The
listener survives, stays within its memory bounds, and the good session is
complete.  ``bench/fuzz_protocol.py`` runs rounds of this for longer."""

from __future__ import annotations

import asyncio
import random
import socket

from tests.fuzz.test_monitor_fuzz import cbor_noise, mutate, real_bodies
from tests.monitor import fake_monitor as fm
from tests.monitor.receiver import assert_complete_unless_dropped, kernel_udp_drops
from tests.monitor.test_receive_udp import SMALL, Listener, assert_same_events

HOSTS = [f"127.0.0.{n}" for n in range(2, 10)]


def attacks() -> list[bytes]:
    """The monitor-layer attacks of issue 12 item 10, as datagrams."""
    log = fm.load_eventlog(SMALL.read_bytes())
    sharing = b"\x00"
    for level in range(40):
        sharing = b"\xd8\x1c\x82" + sharing + b"\xd8\x1d" + bytes([0x18, level])
    bad_event = fm.event_full(b"\x00\x00" + bytes(8) + b"\x00\x00\x00\x01" + b"!")
    return ([b"\x82\x01\x82\x00\xc2\x59\x07\x00" + b"\x7f" * 1792,      # bignum
             b"\x82\x03\x82\x00" + sharing,                           # value sharing
             bad_event] + fm.header_bodies(log)                       # bad event, then header
            + [fm.header_type(fm.type_record(t, 4, "x" * 1000)) for t in range(300, 400)]
            + [fm.header_type(fm.type_record(0xFFFF, 0, "end")),
               fm.event_full(b"\xff\xff" + bytes(8))])


def hostile(rng: random.Random, bodies: list[bytes], count: int) -> list[bytes]:
    out = []
    start = rng.randrange(len(bodies) - count)
    for body in bodies[start:start + count]:
        r = rng.random()
        if r < 0.1:
            out.append(mutate(body, rng))
        elif r < 0.15:
            out.append(cbor_noise(rng))
        elif r < 0.2:
            out.append(rng.randbytes(rng.randint(0, 1400)))
        else:
            out.append(body)
    return out


async def blast(address, rng: random.Random, bodies: list[bytes], per_host: int) -> int:
    socks = []
    for host in HOSTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        socks.append(s)
    sent = 0
    try:
        streams = [attacks() + hostile(rng, bodies, per_host) for _ in socks]
        for i in range(max(map(len, streams))):
            for s, stream in zip(socks, streams):
                if i < len(stream):
                    s.sendto(stream[i], address)
                    sent += 1
            if i % 16 == 15:
                await asyncio.sleep(0.005)
    finally:
        for s in socks:
            s.close()
    return sent


def check_bounds(source) -> None:
    assert 0 <= source.sessions.budget.used <= source.sessions.budget.limit
    assert 0 <= source.sessions.hold_budget.used <= source.sessions.hold_budget.limit
    assert source.queued_bytes <= source.config.queue_bytes
    for peer in source.sessions.peers.values():
        s = peer.session
        assert sum(map(len, s.header_records)) <= s.max_header_bytes
        assert s.held <= s.hold_events


async def test_hostile_senders_and_a_good_one():
    rng = random.Random(11)
    bodies = real_bodies()
    async with Listener(idle_timeout=1.0) as listener:
        drops = kernel_udp_drops()
        good = asyncio.create_task(listener.send(SMALL, duplicate=1.0, interval=0.005))
        sent = await blast(listener.address, rng, bodies, 2500)
        await good
        drops = kernel_udp_drops() - drops
        check_bounds(listener.source)
        await listener.got.wait(lambda g: any(s.ended and s.info.peer.startswith("127.0.0.1:")
                                              for s in g.streams), 60)
        assert not listener.task.done()
        source = listener.source
        assert source.sessions.bad_datagrams + source.sessions.invalid_strangers > 0.05 * sent
    (good_stream,) = [s for s in listener.got.streams if s.info.peer.startswith("127.0.0.1:")]
    assert good_stream.decode_error is None and good_stream.error is None
    assert_complete_unless_dropped(good_stream.lines, SMALL, drops, assert_same_events)
    # every session ended with the listener: nothing is left charged to the shared budgets
    sessions = source.sessions
    assert not sessions.peers and sessions.hold_budget.used == 0 and sessions.budget.used == 0


async def test_the_listener_survives_every_attack_alone():
    async with Listener(idle_timeout=0.5) as listener:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            for body in attacks():
                s.sendto(body, listener.address)
            await asyncio.sleep(0.2)
        check_bounds(listener.source)
        assert not listener.task.done()
        await listener.send(SMALL, duplicate=1.0)
        await listener.got.wait(lambda g: any(s.ended and s.info.peer.startswith("127.0.0.1:")
                                              for s in g.streams), 60)
    source = listener.source
    # (types the header did not declare start a new session of that sender: a new stream)
    attacker = [e for e in source.sessions.ended if e["peer"].startswith("127.0.0.2:")]
    assert sum(e["bad_held_events"] for e in attacker) == 1   # the header went through after it
    # records over the header bound, the 0xffff declaration and event
    assert sum(e["bad_datagrams"] for e in attacker) >= 3
    assert source.sessions.invalid_strangers == 2              # bignum, sharing: no session
    (good,) = [s for s in listener.got.streams if s.info.peer.startswith("127.0.0.1:")]
    assert_same_events(good.lines, SMALL)
