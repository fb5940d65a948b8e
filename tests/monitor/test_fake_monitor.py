"""The test monitor itself must be right before it can judge liveprof's
receiver: spec section 9 byte for byte, and logs that survive the trip
(cut up, framed, reassembled, rebuilt per spec 5.3) decode to the same
events as the original file."""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from pathlib import Path

import cbor2
import pytest

from protocol import Decoder

from . import fake_monitor as fm

DATA = Path(__file__).resolve().parent.parent / "data"
LOGS = sorted(DATA.glob("*.eventlog"))
SMALL = [p for p in LOGS if p.stat().st_size <= 20_000]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def user_message_payload() -> bytes:
    return h("0013 00000000000003e8 0002") + b"hi"


def reference_events(data: bytes):
    """What a receiver should get: the file's events without block markers,
    capability unknown."""
    return [e._replace(cap=None) for e in Decoder().feed(data) if e.type != fm.BLOCK_MARKER]


def multiset(events) -> Counter:
    """Events compared regardless of order (fields may hold lists)."""
    return Counter(repr(e) for e in events)


def decoded(data: bytes):
    return [e._replace(cap=None) for e in Decoder().feed(data)]


# -- spec section 9, byte-exact -------------------------------------------------


def test_9_1_user_message_frame():
    p = user_message_payload()
    assert len(p) == 14
    assert fm.frame(fm.event_full(p)) == h(
        "00 00 00 15 82 02 82 01 82 00 4e 00 13 00 00 00 00 00 00 03 e8 00 02 68 69")
    assert fm.Splitter().event(p) == [fm.event_full(p)]


def test_9_2_empty_state():
    state = fm.EventlogState().encode()
    assert state == h("87 00 a0 a0 a0 a0 80 00")
    assert fm.frame(fm.profile_state(state)) == h(
        "00 00 00 0d 82 03 82 00 48 87 00 a0 a0 a0 a0 80 00")


def test_9_2_one_thread_state():
    state = fm.EventlogState.fold([(0, 100, struct.pack(">I", 1))])
    assert state.encode() == h(
        "87 00 a1 01 88 00 01 80 20 81 00 80 18 64 18 64 a0 a0 a0 80 18 64")


def test_9_3_header_frames():
    assert fm.frame(fm.header_length(3)) == h("00 00 00 05 82 01 82 00 03")
    record = fm.type_record(19, None, "User message")
    assert len(record) == 32
    assert fm.frame(fm.header_type(record)) == h(
        "00 00 00 26 82 01 82 01 58 20"
        "65 74 62 00 00 13 ff ff 00 00 00 0c 55 73 65 72 20 6d 65 73 73 61 67 65 00 00 00 00"
        "65 74 65 00")


def test_9_4_split_event():
    bodies = fm.Splitter(8, first_id=5).event(user_message_payload())
    assert [fm.frame(b) for b in bodies] == [
        h("00 00 00 0a 82 02 82 01 82 01 83 00 05 02"),
        h("00 00 00 11 82 02 82 01 84 02 05 00 48 00 13 00 00 00 00 00 00"),
        h("00 00 00 0f 82 02 82 01 84 02 05 01 46 03 e8 00 02 68 69"),
    ]
    assert fm.event_split_header(5, 2) == bodies[0][:]
    assert fm.event_part(5, 1, h("03 e8 00 02 68 69")) == bodies[2]


def test_9_5_other_shapes():
    assert fm.frame(fm.service_pause(True)) == h("00 00 00 05 82 00 82 00 f5")
    assert fm.frame(fm.block_header(0, 1000, 2000, 0, 512)) == h(
        "00 00 00 13 82 02 82 00 82 00 86 00 00 19 03 e8 19 07 d0 01 19 02 00")


# -- CBOR details (spec 4.1, 6) ---------------------------------------------------------


def test_haskell_lists_are_indefinite_arrays_and_maybe_is_an_array():
    assert fm.cbor(fm.hs_list([])) == h("80")
    assert fm.cbor(fm.hs_list(["a", "b"])) == h("9f 61 61 61 62 ff")
    assert fm.cbor(fm.maybe(None)) == h("80")
    assert fm.cbor(fm.maybe(7)) == h("81 07")
    assert fm.cbor([-1, 24, 256, 65536, 2**32]) == h(
        "85 20 18 18 19 0100 1a 00010000 1b 0000000100000000")


def test_splitting_shares_message_ids_between_events_and_snapshots():
    sp = fm.Splitter(10)
    a = sp.event(bytes(25))
    b = sp.state(bytes(11))
    c = sp.event(bytes(10))  # not longer than M: not split
    d = sp.event(bytes(11))
    assert len(a) == 4 and len(b) == 3 and len(c) == 1 and len(d) == 3
    assert cbor2.loads(a[0]) == [2, [1, [1, [0, 0, 3]]]]
    assert cbor2.loads(b[0]) == [3, [1, [0, 1, 2]]]
    assert cbor2.loads(b[2]) == [3, [2, 1, 1, bytes(1)]]
    assert cbor2.loads(d[0]) == [2, [1, [1, [0, 2, 2]]]]
    assert [len(cbor2.loads(x)[1][1][3]) for x in a[1:]] == [10, 10, 5]


def _capset_events():
    pk = struct.pack
    return [
        (25, 10, pk(">IH", 1, 2)),  # capset 1, OS process
        (27, 11, pk(">IH", 1, 0)),
        (27, 12, pk(">IH", 1, 1)),
        (28, 13, pk(">IH", 1, 0)),
        (29, 14, pk(">I", 1) + b"GHC-9.2 rts_thr"),
        (30, 15, pk(">I", 1) + b"prog\0+RTS\0-l\0"),
        (32, 16, pk(">II", 1, 4242)),
        (43, 17, pk(">IQI", 1, 1_700_000_000, 5)),
        (52, 18, pk(">IHQQQQ", 1, 2, 0, 1 << 20, 1 << 20, 4096)),
        (53, 19, pk(">IHQQQIQQ", 1, 1, 100, 8, 16, 4, 50, 70)),
        (45, 20, pk(">H", 0)),
        (47, 21, pk(">H", 0)),
        (55, 22, pk(">QHQ", 0xABC, 0, 777)),
        (56, 23, pk(">QHH", 0xABC, 0, 1)),
        (0, 24, pk(">I", 7)),
        (15, 25, pk(">I", 8)),
        (44, 26, pk(">I", 7) + b"worker"),
        (1, 27, pk(">I", 7)),
        (2, 28, pk(">IHI", 7, 8, 3)),  # blocked on a black hole owned by 3
        (2, 29, pk(">IHI", 8, 20, 0)),  # blocked on MVar read: declaration order 8
        (4, 30, pk(">IH", 8, 1)),
        (9, 31, b""),
        (19, 40, b"not a state event"),
    ]


def test_state_fold_and_encoding():
    state = fm.EventlogState.fold(_capset_events())
    raw = state.encode()
    assert h("98 1c") in raw  # CapsetState is array(28)
    assert h("9f 64") + b"prog" + h("64") + b"+RTS" + h("62") + b"-l" + h("ff") in raw
    tag, threads, capsets, caps, tasks, gc, last = cbor2.loads(raw)
    assert tag == 0 and gc == [31] and last == 31
    assert threads[7] == [0, 7, ["worker"], -1, [3, [20, 3]], [], 24, 28]
    assert threads[8] == [0, 8, [], 1, [4], [0], 25, 30]
    cs = capsets[1]
    assert len(cs) == 28
    assert cs[:7] == [0, 1, [1], [1], 19, 10, "GHC-9.2 rts_thr"]
    assert cs[7:13] == [["prog", "+RTS", "-l"], [], [4242], [], 1_700_000_000, 5]
    assert cs[16:] == [1, 0, 1 << 20, 1 << 20, 4096, [19], 100, 8, 16, 4, 50, 70]
    assert caps == {0: [0, 0, True, 21, 20]}
    assert tasks == {0xABC: [0, 0xABC, 1, [0, 777], 22, 23]}
    # finishing removes the thread, GC end clears the flag
    state.apply(2, 50, struct.pack(">IHI", 7, 5, 0))
    state.apply(10, 51, b"")
    _, threads, *_, gc, last = cbor2.loads(state.encode())
    assert 7 not in threads and gc == [] and last == 51


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_state_of_a_whole_log_is_valid_cbor(log):
    parsed = fm.load_eventlog(log.read_bytes()).parsed()
    value = cbor2.loads(fm.EventlogState.fold(parsed).encode())
    assert len(value) == 7 and value[0] == 0
    assert all(len(c) == 28 for c in value[2].values())


# -- eventlog cutting and rebuilding (spec 5) ------------------------------------------


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_split_and_rebuild_decodes_to_the_same_events(log):
    data = log.read_bytes()
    types, events = fm.split_eventlog(data)
    assert all(r[:4] == b"etb\0" and r[-8:] == h("00000000 65746500") for r in types)
    assert all(struct.unpack_from(">H", e)[0] != fm.BLOCK_MARKER for e in events)
    rebuilt = fm.rebuild_eventlog(types, events)
    assert decoded(rebuilt) == reference_events(data)


def test_raw_event_records_are_byte_slices_of_the_file():
    data = (DATA / "hello-ghc-8.6.5.eventlog").read_bytes()
    _, events = fm.split_eventlog(data)
    pos = 0
    for e in events:  # in file order, each exactly as in the file
        pos = data.index(e, pos) + len(e)


def test_cut_file_gives_the_complete_records():
    data = (DATA / "parallelTest.eventlog").read_bytes()
    full = fm.load_eventlog(data)
    assert full.complete
    for cut in (2, 7, 500, 3000):
        part = fm.load_eventlog(data[:-cut])
        assert not part.complete
        assert part.type_records == full.type_records
        assert part.event_records == full.event_records[:len(part.event_records)]
        assert len(part.event_records) < len(full.event_records) or cut == 2
    with pytest.raises(fm.EventlogError):
        fm.load_eventlog(data[:20])


def test_extra_info_is_dropped_and_end_marker_stops():
    decl = (b"etb\0" + struct.pack(">HHI", 19, 0xFFFF, 2) + b"um" + struct.pack(">I", 3)
            + b"xyz" + b"ete\0")
    ev = struct.pack(">HQH", 19, 5, 1) + b"!"
    data = b"hdrbhetb" + decl + b"hetehdredatb" + ev + b"\xff\xff" + b"junk after the end"
    types, events = fm.split_eventlog(data)
    assert types == [fm.type_record(19, None, b"um")]
    assert events == [ev]
    with pytest.raises(fm.EventlogError):
        fm.split_eventlog(b"hdrbhetb" + decl + b"hetehdredatb" + struct.pack(">HQ", 77, 0))


# -- the whole message sequence ---------------------------------------------------------


@pytest.mark.parametrize("max_size", [None, 1, 16, 1200])
def test_stream_bodies_round_trip(max_size):
    data = (DATA / "ghc-9.2-events.eventlog").read_bytes()
    bodies = fm.stream_bodies(data, max_size=max_size, snapshot_after=None)
    assert cbor2.loads(bodies[0])[0] == 3  # the snapshot comes first
    got = fm.reference_receive(bodies)
    assert got.header_length == len(got.type_records)
    assert decoded(got.eventlog()) == reference_events(data)
    log = fm.load_eventlog(data)
    assert got.states == [cbor2.loads(fm.EventlogState.fold(log.parsed()).encode())]


# -- TCP -------------------------------------------------------------------------------


def read_all(port: int, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_tcp_serves_each_connection_the_whole_log():
    data = (DATA / "hello-ghc-8.6.5.eventlog").read_bytes()
    with fm.TcpMonitor(data, max_size=20) as mon:
        assert mon.port
        for _ in range(2):
            stream = read_all(mon.port)
            got = fm.reference_receive(fm.read_frames(stream))
            assert decoded(got.eventlog()) == reference_events(data)
            assert got.states == [cbor2.loads(fm.EventlogState().encode())]
        assert mon.connections == 2
        assert mon.wait_finished(2)
        assert mon.events_sent == 2 * len(fm.split_eventlog(data)[1])


def test_tcp_close_after_and_resume_like_the_shared_channel():
    data = (DATA / "nonmoving-gc.eventlog").read_bytes()
    events = fm.split_eventlog(data)[1]
    with fm.TcpMonitor(DATA / "nonmoving-gc.eventlog", close_after=10, resume=True,
                       snapshot_after=None) as mon:
        got = [fm.reference_receive(fm.read_frames(read_all(mon.port)))
               for _ in range((len(events) + 9) // 10)]
        assert all(len(g.events) == 10 for g in got[:-1])
        assert sum((g.events for g in got), []) == events
        assert all(g.header_length == len(g.type_records) for g in got)
        assert mon.connections == len(got)


def test_tcp_close_after_wins_over_hold_open():
    with fm.TcpMonitor(DATA / "nonmoving-gc.eventlog", close_after=5, hold_open=True) as mon:
        for _ in range(2):
            assert len(fm.reference_receive(fm.read_frames(read_all(mon.port))).events) == 5


def test_tcp_raw_bytes_and_extra_frames_per_connection():
    data = (DATA / "nonmoving-gc.eventlog").read_bytes()
    garbage = fm.frame(b"\xff\x00garbage") + b"\xff\xff\xff\xff"
    bad = [fm.cbor([2, "wrong"]), fm.event_split_header(99, 3)]
    raw = lambda i: garbage if i == 0 else None  # noqa: E731
    with fm.TcpMonitor(data, raw=raw, extra_frames=bad, close_after=0) as mon:
        assert read_all(mon.port) == garbage
        frames = fm.read_frames(read_all(mon.port))
        n = len(fm.split_eventlog(data)[0])
        assert len(frames) == 1 + 1 + n + 2
        assert frames[-2:] == bad
        assert mon.connections == 2


def test_tcp_hold_open_and_stop():
    data = (DATA / "nonmoving-gc.eventlog").read_bytes()
    mon = fm.TcpMonitor(data, hold_open=True, state_every=50).start()
    try:
        s = socket.create_connection(("127.0.0.1", mon.port), timeout=5)
        assert mon.wait_connections(1)
        buf = b""
        n_events = len(fm.split_eventlog(data)[1])
        while len(fm.reference_receive(fm.read_frames(buf)).events) < n_events:
            buf += s.recv(65536)
        got = fm.reference_receive(fm.read_frames(buf))
        assert len(got.states) == 1 + (n_events - 1) // 50
    finally:
        mon.stop()
    assert s.recv(10) == b""  # stop() ends the held connection
    s.close()


# -- datagrams ---------------------------------------------------------------------------


def test_datagram_bodies_fit_and_rebuild():
    data = (DATA / "ghc-9.2-events.eventlog").read_bytes()
    bodies = fm.datagram_bodies(data, snapshot_after=None, repeat_header_every=100)
    assert all(len(b) < fm.DATAGRAM_LIMIT for b in bodies)
    got = fm.reference_receive(fm.mangle(bodies, reorder=True, seed=3))
    assert multiset(decoded(got.eventlog())) == multiset(reference_events(data))
    n_events = len(fm.split_eventlog(data)[1])
    assert len(got.states) == 1 + (n_events - 1) // 100
    assert got.header_length == len(got.type_records)


def test_big_payloads_are_split_for_datagrams():
    big = struct.pack(">HQH", 19, 1, 3000) + bytes(3000)
    data = fm.rebuild_eventlog([fm.type_record(19, None, "User message")], [big])
    bodies = fm.datagram_bodies(data)
    assert all(len(b) < fm.DATAGRAM_LIMIT for b in bodies)
    assert cbor2.loads(bodies[3]) == [2, [1, [1, [0, 0, 3]]]]  # state, header(2), split: id 0, 3 parts
    assert fm.reference_receive(fm.mangle(bodies, reorder=True, duplicate=0.5)).events == [big]


def test_mangle():
    items = [bytes([i]) for i in range(200)]
    assert fm.mangle(items) == items
    shuffled = fm.mangle(items, reorder=True, seed=1)
    assert shuffled != items and sorted(shuffled) == items
    window = fm.mangle(items, reorder=5, seed=1)
    assert sorted(window) == items and window != items
    assert all(abs(b[0] - i) <= 5 for i, b in enumerate(window))
    dup = fm.mangle(items, duplicate=0.3, seed=1)
    assert set(dup) == set(items) and 220 < len(dup) < 300
    dropped = fm.mangle(items, drop=0.3, seed=1)
    assert set(dropped) < set(items) and 100 < len(dropped) < 180


def test_send_datagrams_over_loopback():
    data = (DATA / "nonmoving-gc.eventlog").read_bytes()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    received: list[bytes] = []
    sources = set()

    def receive(expected: int) -> None:
        while len(received) < expected:
            try:
                body, addr = rx.recvfrom(65536)
            except TimeoutError:
                return
            received.append(body)
            sources.add(addr)

    expected = len(fm.mangle(fm.datagram_bodies(data, max_size=64), duplicate=0.2, seed=9))
    t = threading.Thread(target=receive, args=(expected,))
    t.start()
    sent = fm.send_datagrams(data, rx.getsockname(), max_size=64, reorder=20, duplicate=0.2,
                             seed=9, burst=32, interval=0.001)
    t.join()
    rx.close()
    assert len(sent) == expected
    assert Counter(received) == Counter(sent)
    assert len(sources) == 1  # one sender socket: one session
    got = fm.reference_receive(received)
    assert set(multiset(decoded(got.eventlog()))) == set(multiset(reference_events(data)))
