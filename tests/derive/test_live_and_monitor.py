"""The same points whether a log is read whole, merged live as it arrives, or
received through the monitor protocol (which drops every event's capability:
there, the per-capability measurements are left out, and everything else must
be the same)."""

from __future__ import annotations

import pytest

from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import PER_CAPABILITY, Identity, Pipeline
from ingest.derive.registry import REGISTRY
from protocol import Decoder
from protocol.monitor import Session, decode_message
from tests.corpus import log_id, logs, pick
from tests.corpus import read as data
from tests.monitor import fake_monitor as fm

LOGS = logs()
LIVE = OrderSettings(live=True)  # the service's defaults (idle rule, 10 s lag bound)
NO_CAPS = DeriveSettings(caps_known=False)


def derive(payload: bytes, settings=None, order=None, chunk=65536) -> dict[str, list[str]]:
    pipe = Pipeline(settings or DeriveSettings(), Identity(host="test", start_wall_ns=0),
                    order=order)
    dec = Decoder(only=pipe.wants)
    points = []
    for i in range(0, len(payload), chunk):
        points += pipe.feed(dec.feed(payload[i:i + chunk]))
    points += pipe.close()
    out: dict[str, list[str]] = {}
    for p in points:
        out.setdefault(p.measurement, []).append(p.to_line())
    return out


def through_monitor(log) -> bytes:
    """The eventlog bytes a monitor session rebuilds from the test monitor's
    messages for ``log`` (split above 200 bytes, as a datagram sender would)."""
    session = Session()
    bodies = fm.stream_bodies(fm.load_eventlog(data(log)), max_size=200)
    return session.receive_all([decode_message(b) for b in bodies])


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_live_merge_gives_the_whole_file_points(log):
    assert derive(data(log), order=LIVE) == derive(data(log))


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_monitor_protocol_gives_the_same_points(log):
    rebuilt = through_monitor(log)
    got = derive(rebuilt, NO_CAPS, order=LIVE, chunk=4096)
    assert got == derive(data(log), NO_CAPS)
    assert not set(got) & PER_CAPABILITY


def test_without_capabilities_only_per_capability_figures_are_left_out():
    log = pick("gc-heap.N2.l", "gc-heap-small.N2.hT")
    full, bare = derive(data(log)), derive(data(log), NO_CAPS)
    assert set(full) - set(bare) == PER_CAPABILITY and PER_CAPABILITY <= set(REGISTRY)
    assert "allocated_bytes=" in full["heap"][0] and "allocated_bytes=" not in bare["heap"][0]
    assert full["gc"] == bare["gc"] and full["threads"] == bare["threads"]
