"""Fuzzing the monitor message layer: random and mutated CBOR bodies.

``decode_message`` returns one of the message types or raises
``MessageError``, nothing else, quickly; a ``Session`` fed whatever decodes
raises only ``MessageError`` / ``HeaderChanged`` and stays within its
bounds; and the bytes it hands on are ones the decoder takes (or refuses
with ``DecodeError``).  The specific attacks of issue 12 item 10 are in
test_monitor_attacks.py.  ``bench/fuzz_protocol.py`` runs these checks for
longer.
"""

from __future__ import annotations

import random
import time

import cbor2
import pytest

from protocol import DecodeError, Decoder
from protocol.monitor import (
    BlockHeader,
    BlockPart,
    EventMessage,
    HeaderChanged,
    HeaderLength,
    HeaderType,
    Message,
    MessageError,
    ServicePause,
    Session,
    StateMessage,
    _cbor,
    decode_message,
)
from protocol.monitor._messages import _fast, _profile_msg
from tests.corpus import DATA
from tests.monitor import fake_monitor as fm

MESSAGE_TYPES = (ServicePause, HeaderLength, HeaderType, EventMessage, StateMessage, BlockHeader,
                 BlockPart)
LOGS = [DATA / "threads-mvar.nonthreaded.l.eventlog", DATA / "ghc-9.2-events.eventlog"]
SLOW = 0.5      # seconds: one body taking this long is a failure (it would stall a listener)


class Failure(AssertionError):
    """A fuzz input broke a rule."""


def real_bodies() -> list[bytes]:
    """Datagram bodies of real logs, split small so every message shape occurs."""
    out = []
    for log in LOGS:
        out += fm.datagram_bodies(log, max_size=64, repeat_header_every=3000)
    out += [fm.service_pause(True), fm.block_header(1, 2, 3, None, 4),
            fm.block_part(1, b"\0\x13" + bytes(10))]
    return out


def cbor_noise(rng: random.Random, depth: int = 0) -> bytes:
    """A random CBOR-ish item: every major type, tags, floats, odd lengths."""
    kind = rng.randrange(10 if depth < 6 else 4)
    if kind == 0:
        return cbor2.dumps(rng.choice((0, 1, 23, 24, 255, 65536, 2**32, 2**64 - 1, -1, -2**64)))
    if kind == 1:
        return cbor2.dumps(rng.randbytes(rng.randint(0, 40)))
    if kind == 2:
        return bytes([rng.randrange(256)]) + rng.randbytes(rng.randint(0, 9))
    if kind == 3:
        return cbor2.dumps(rng.choice((True, False, None, 1.5, "text")))
    if kind in (4, 5):
        items = [cbor_noise(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        if kind == 4:
            return bytes([0x80 + len(items)]) + b"".join(items)
        return b"\x9f" + b"".join(items) + b"\xff"
    if kind == 6:
        pairs = [cbor_noise(rng, depth + 1) for _ in range(2 * rng.randint(0, 3))]
        return bytes([0xA0 + len(pairs) // 2]) + b"".join(pairs)
    if kind == 7:        # a tag: bignums, value sharing, anything
        tag = rng.choice((0, 1, 2, 3, 28, 29, 55799, 258, rng.randrange(1 << 16)))
        return cbor2.dumps(cbor2.CBORTag(tag, 0))[:-1] + cbor_noise(rng, depth + 1)
    if kind == 8:        # a real message prefix with noise inside
        return rng.choice((b"\x82\x02\x82\x01\x82\x00", b"\x82\x01\x82\x01", b"\x82\x03",
                           b"\x82\x02\x82\x00\x83\x01")) + cbor_noise(rng, depth + 1)
    return b"\x82" + bytes([rng.randrange(4)]) + cbor_noise(rng, depth + 1)


def mutate(body: bytes, rng: random.Random) -> bytes:
    buf = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(buf) + 1)
        kind = rng.randrange(5)
        if kind == 0 and buf:
            buf[min(i, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf[i:i] = cbor_noise(rng)
        elif kind == 2:
            del buf[i:i + rng.randint(1, 8)]
        elif kind == 3:
            buf[i:i + 1] = bytes([rng.choice((0x18, 0x19, 0x1a, 0x1b, 0x5b, 0x9b, 0xbb, 0xc2,
                                              0xd8, 0xfb, 0xff, 0x9f, 0x5f))])
        else:
            buf += rng.randbytes(rng.randint(1, 20))
    return bytes(buf)


def decode(body: bytes):
    """``decode_message`` under the rules: a message or MessageError, fast."""
    start = time.perf_counter()
    msg: Message | MessageError
    try:
        msg = decode_message(body)
    except MessageError as exc:
        msg = exc
    except Exception as exc:
        raise Failure(f"{type(exc).__name__} escaped for {body[:60].hex()}: {exc}") from exc
    if time.perf_counter() - start > SLOW:
        raise Failure(f"{time.perf_counter() - start:.1f} s for {len(body)} bytes")
    if not isinstance(msg, MESSAGE_TYPES + (MessageError,)):
        raise Failure(f"decode_message returned {type(msg).__name__}")
    fast = _fast(body)
    if fast is not None:       # the shortcut for split events reads what the general path reads
        general: Message | MessageError
        try:
            general = _profile_msg(_cbor.loads(body))
        except MessageError as exc:
            general = exc
        if general != fast:
            raise Failure(f"shortcut {fast!r:.80} != {general!r:.80} for {body[:40].hex()}")
    if isinstance(msg, MessageError):
        if len(str(msg)) > 400:
            raise Failure(f"error text of {len(str(msg))} characters")
        return None
    return msg


class Receiver:
    """A session and a decoder behind it, as the UDP source has them."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.session = Session(datagram=True)
        self.decoder = Decoder()
        self.failed = False

    def take(self, msg) -> None:
        s = self.session
        try:
            data = s.receive(msg, 0.0)
        except HeaderChanged:
            self._reset()
            return
        except MessageError as exc:
            data = exc.data
        except Exception as exc:
            raise Failure(f"session raised {type(exc).__name__}: {exc}") from exc
        if sum(map(len, s.header_records)) > s.max_header_bytes or \
                len(s.header_records) > s.max_records:
            raise Failure("session header over its bound")
        if s.held > s.hold_events or s.reassembler.held_bytes > s.reassembler.max_bytes:
            raise Failure("session holds more than its bounds")
        if data and not self.failed:
            try:
                self.decoder.feed(data)
            except DecodeError:
                self.failed = True


def check_bodies(bodies, receiver: Receiver) -> int:
    """Decode each body and feed what decodes to ``receiver``; how many decoded."""
    good = 0
    for body in bodies:
        msg = decode(body)
        if msg is not None:
            good += 1
            receiver.take(msg)
    return good


@pytest.mark.parametrize("seed", range(4))
def test_random_cbor(seed):
    rng = random.Random(seed)
    receiver = Receiver()
    check_bodies((cbor_noise(rng) for _ in range(5000)), receiver)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_real_messages_in_a_real_stream(seed):
    rng = random.Random(seed)
    bodies = real_bodies()
    receiver = Receiver()
    start = rng.randrange(len(bodies) - 4000)
    stream = [mutate(b, rng) if rng.random() < 0.05 else b for b in bodies[start:start + 4000]]
    good = check_bodies(stream, receiver)
    assert good > 0.9 * len(stream)


def test_random_bytes():
    rng = random.Random(7)
    receiver = Receiver()
    check_bodies((rng.randbytes(rng.randint(0, 1400)) for _ in range(5000)), receiver)
