"""The agent's C loops (protocol/monitor/_speedups.c) against their pure Python
references (selected by LIVEPROF_PURE_PYTHON=1; here by setting the module to
None): the same message bodies, the same snapshot after every piece fed, the
same datagrams and frames.  The C block loop thins the state fold (it leaves
out events whose effect a later event of the block overwrites): the synthetic
logs below mix every folded event type in random orders, with threads,
capsets, capabilities and tasks made and removed, so that a wrong rule shows
as a different snapshot."""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import subprocess
import sys

import pytest

import ingest.agent._send as native
import protocol.monitor._sender as sender
from protocol.monitor import (
    BlockHeader,
    Encoder,
    StateFold,
    encode_message,
    frames,
    pack_datagrams,
)
from protocol.monitor._fold import PLAN
from tests.corpus import DATA
from tests.monitor import fake_monitor as fm

try:  # the compiled loops whatever LIVEPROF_PURE_PYTHON says (it selects, it does not hide)
    from protocol.monitor import _speedups as NATIVE
except ImportError:
    NATIVE = None  # type: ignore[assignment]  # not built: test_the_c_loops_are_built fails
try:
    from ingest.agent import _sendmmsg as SENDMMSG
except ImportError:
    SENDMMSG = None  # type: ignore[assignment]  # not built: test_the_c_loops_are_built fails
LOGS = sorted(DATA.glob("*.eventlog"))

# (type id, payload size or None for variable) as GHC declares them
TYPES = {0: 4, 1: 4, 2: 10, 3: 4, 4: 6, 9: 0, 10: 0, 15: 4, 18: 14, 20: 0, 21: 0, 22: 0,
         25: 6, 26: 4, 27: 6, 28: 6, 29: None, 30: None, 31: None, 32: 8, 33: 8, 43: 16,
         44: None, 45: 2, 46: 2, 47: 2, 48: 2, 49: 12, 50: 12, 51: 12, 52: 38, 53: 50, 54: 0,
         55: 18, 56: 12, 57: 8, 60: 0}         # (60: a type the fold does not read)
COMMON = [*range(16), *range(18, 33)]     # (synthetic: the kinds of event of every block)


@pytest.fixture
def pure(monkeypatch):
    """Run the pure Python loops inside the block."""
    def use(on: bool) -> None:
        monkeypatch.setattr(sender, "_speedups", None if on else NATIVE)
    return use


def test_the_c_loops_are_built():
    assert NATIVE is not None, "protocol/monitor/_speedups was not compiled (gcc, headers?)"
    assert SENDMMSG is not None, "ingest/agent/_sendmmsg was not compiled (gcc, headers?)"
    pure = bool(os.environ.get("LIVEPROF_PURE_PYTHON"))
    assert (vars(sender)["_speedups"] is None) == pure
    assert (vars(native)["_sendmmsg"] is None) == pure


def test_pure_python_switch_turns_them_off():
    code = ("from protocol.monitor import _sender; from ingest.agent import _send; "
            "print(_sender._speedups is None, _send._sendmmsg is None)")
    env = dict(os.environ, LIVEPROF_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True True"


def encode(data: bytes, cuts: list[int], max_size: int | None) -> tuple[list[object], int]:
    """Units and snapshot after each piece; and the number of fold calls."""
    enc, out, at = Encoder(max_size=max_size), list[object](), 0
    calls = [0]
    apply = enc.fold.apply

    def counted(type_id: int, t: int, p: bytes) -> None:
        calls[0] += 1
        apply(type_id, t, p)
    enc.fold.apply = counted      # type: ignore[method-assign]  # (counts, then folds)
    for cut in [*cuts, len(data)]:
        out.append(enc.feed(data[at:cut]))
        out.append(enc.snapshot())
        at = cut
    out.append(enc.close())
    out += [enc.snapshot(), enc.events, enc.block_count, enc.pending]
    return out, calls[0]


def same(data: bytes, pure, seed: int, max_size: int | None = 1200) -> tuple[int, int]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(60, len(data) - 1)))
    pure(True)
    want, python_calls = encode(data, cuts, max_size)
    pure(False)
    got, c_calls = encode(data, cuts, max_size)
    assert got == want
    return python_calls, c_calls


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_every_log_encodes_the_same(path, pure):
    data = path.read_bytes()
    for max_size in (None, 1200, 64):
        same(data, pure, len(data), max_size)


def synthetic(seed: int, short_stop: bool = False, blocks: int = 60) -> bytes:
    """An eventlog of random blocks of the folded events (and one the fold
    skips); ``short_stop`` declares stop with 4 bytes (too short for its
    status: the C loop hands such blocks to Python)."""
    rng = random.Random(seed)
    types = {**TYPES, **({2: 4} if short_stop else {})}
    header = [fm.type_record(t, s, f"type {t}") for t, s in sorted(types.items())]
    t = 1000
    records = []

    def rec(tid: int, payload: bytes) -> bytes:
        nonlocal t
        t += rng.randrange(1, 50)
        if types[tid] is None:
            return struct.pack(">HQH", tid, t, len(payload)) + payload
        assert len(payload) == types[tid], tid
        return struct.pack(">HQ", tid, t) + payload

    def thread() -> int:
        return rng.choice((1, 2, 3, 4, 5, 1, 1, 2))

    def event(wide: bool, rare: float = 0.3) -> bytes:
        th = rng.randrange(1, 700) if wide else thread()
        cs = rng.choice((0, 1, 2))
        k = rng.randrange(40) if rng.random() < rare else rng.choice(COMMON)
        if k < 8:
            return rec(rng.choice((1, 3)), struct.pack(">I", th))
        if k < 13:
            status = rng.choice((1, 2, 3, 4, 5, 8, 8, 10, 14, 19, 99))
            tail = struct.pack(">I", rng.choice((0, 7))) if types[2] == 10 else b""
            return rec(2, (struct.pack(">IH", th, status) + tail)[:types[2]])
        if k < 16:
            return rec(4, struct.pack(">IH", th, rng.randrange(3)))
        if k < 17:
            return rec(rng.choice((0, 15)), struct.pack(">I", th))
        if k < 18:
            label = rng.choice((b"worker", b"", b"\xff\xfe"))
            return rec(44, (struct.pack(">I", th) + label) if rng.random() < 0.9 else b"ab")
        if k < 24:
            return rec(rng.choice((9, 10, 22, 20, 21, 54, 20, 21)), b"")
        if k < 30:
            return rec(rng.choice((49, 50, 51)), struct.pack(">IQ", cs, rng.randrange(1 << 40)))
        if k < 32:
            return rec(53, struct.pack(">IHQQQIQQ", cs, 2, *(rng.randrange(1 << 30)
                                                              for _ in range(6))))
        if k < 33:
            return rec(52, struct.pack(">IHQQQQ", cs, 2, 1, 2, 3, 4))
        if k < 34:
            return rec(rng.choice((25, 27, 28)), struct.pack(">IH", cs, rng.randrange(3)))
        if k < 35:
            kind = rng.choice((26, 32, 33, 43))
            tail = {26: b"", 32: b"\0\0\1\0", 33: b"\0\0\0\1", 43: bytes(range(12))}[kind]
            return rec(kind, struct.pack(">I", cs) + tail)
        if k < 36:
            kind = rng.choice((29, 30, 31))
            return rec(kind, struct.pack(">I", cs) + b"prog\0arg\0")
        if k < 37:
            return rec(rng.choice((45, 46, 47, 48)), struct.pack(">H", rng.randrange(3)))
        if k < 38:
            return rec(55, struct.pack(">QHQ", rng.randrange(3), 1, 77))
        if k < 39:
            if rng.random() < 0.5:
                return rec(56, struct.pack(">QHH", rng.randrange(3), 0, 1))
            return rec(57, struct.pack(">Q", rng.randrange(3)))
        return rec(60, b"")

    records += [rec(25, struct.pack(">IH", c, 2)) for c in (0, 1, 2)]
    records += [rec(0, struct.pack(">I", n)) for n in range(1, 6)]
    for n in range(blocks):
        wide = n % 17 == 16                  # more threads than the C loop's map holds
        rare = rng.choice((0.0, 0.01, 0.05, 0.5))   # creations, removals: barriers
        body = b"".join(event(wide, rare)
                        for _ in range(rng.randrange(0, 900 if wide else 200)))
        begin = t
        t += 1
        marker = struct.pack(">HQIQH", 18, begin, 24 + len(body), t, rng.choice((0, 1, 0xFFFF)))
        records.append(marker + body)
        if rng.random() < 0.1:
            records.append(event(False))      # an event outside any block
    return fm.rebuild_eventlog(header, records, end=rng.random() < 0.8)


@pytest.mark.parametrize("seed", range(12))
def test_the_thinned_fold_gives_the_same_snapshot(seed, pure):
    data = synthetic(seed)
    python_calls, c_calls = same(data, pure, seed, None if seed % 2 else 1200)
    assert c_calls < python_calls * 0.8      # the thinning is at work


def test_blocks_the_c_loop_leaves_to_python(pure):
    same(synthetic(1, short_stop=True), pure, 1)       # a stop too short for its status
    same(synthetic(2), pure, 2, max_size=80)            # records split (spec 7.1)


def test_the_plan_covers_every_handler_with_its_least_payload():
    assert set(PLAN) == StateFold().folded

    def ready() -> StateFold:
        fold = StateFold()
        for tid, payload in ((25, bytes(6)), (0, bytes(4)), (45, bytes(2)), (55, bytes(18))):
            fold.apply(tid, 1, payload)          # capset 0, thread 0, cap 0, task 0
        return fold

    for tid, (_, least) in PLAN.items():
        fold = ready()
        fold.apply(tid, 99, bytes(least))
        assert fold.state.last_update == 99, tid
        if least:
            fold = ready()
            fold.apply(tid, 99, bytes(least - 1))
            assert fold.state.last_update == 1, tid     # too short: not folded


def test_datagrams_and_frames_are_the_same(pure):
    rng = random.Random(3)
    for _ in range(300):
        bodies = [rng.randbytes(rng.choice((1, 5, 30, 200, 1500))) for _ in range(rng.randrange(40))]
        pending = [rng.randbytes(rng.randrange(1, 300)) for _ in range(rng.randrange(3))]
        size, room = sum(map(len, pending)), rng.choice((100, 1399, 1367))
        before = list(pending)
        pure(True)
        want = (pack_datagrams(pending, size, bodies, room), frames(bodies))
        pure(False)
        got = (pack_datagrams(pending, size, bodies, room), frames(bodies))
        assert got == want and pending == before


def test_block_headers_are_the_messages():
    rng = random.Random(4)
    for _ in range(2000):
        n = [rng.choice((rng.randrange(30), rng.randrange(70000), rng.randrange(1 << 64)))
             for _ in range(4)]
        cap = rng.choice((None, 0, 23, 24, 255, 0xFFFE))
        assert sender.block_header(n[0], n[1], n[2], cap, n[3]) == encode_message(
            BlockHeader(n[0], n[1], n[2], cap, n[3]))


def test_datagrams_go_out_whole_and_in_order_and_a_refusal_stops_the_send(monkeypatch):
    rng = random.Random(6)
    grams = [rng.randbytes(rng.randrange(1, 1400)) for _ in range(300)]   # (several sendmmsg)
    for module in (None, SENDMMSG):
        monkeypatch.setattr(native, "_sendmmsg", module)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            rx.bind(("127.0.0.1", 0))
            tx.connect(rx.getsockname())
            tx.setblocking(False)
            assert native.send_all(tx, grams, 5) == (len(grams), 0)
            rx.settimeout(5)
            received = [rx.recv(2048) for _ in grams[5:]]
            assert received == grams[5:]
            port = rx.getsockname()[1]
        # nobody there now: the kernel's refusal (the ICMP error of an earlier
        # datagram, reported by a later send: the C loop sends a batch a call)
        # stops the send at the datagram it was reported on
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.connect(("127.0.0.1", port))
            tx.setblocking(False)
            results = [native.send_all(tx, grams[:3], 0) for _ in range(4)]
        assert errno.ECONNREFUSED in [err for _, err in results], module
        assert all(err in (0, errno.ECONNREFUSED) and (err == 0) == (at == 3)
                   for at, err in results)
