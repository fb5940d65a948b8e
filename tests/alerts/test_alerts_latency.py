"""The GC-pause alert leaves as soon as its collection's ``gc`` point is
derived: queued in the very ``submit`` that carries the point and published
by the running publisher at once, with no later point, no window end, no
batch end and no end of stream needed (a real Mosquitto; the service's own
path StreamRegistry -> Stream -> every sink).  The pause-share alert is
windowed by nature: it waits for its window to be judged."""

from __future__ import annotations

from ingest.config import DeriveConfig
from ingest.sinks.mqtt import MqttAlertConfig, MqttAlertSink
from ingest.sources.base import StreamInfo
from ingest.streams import StreamRegistry
from tests.alerts.helpers import Subscriber, derive_points, gc_points, wait_until
from tests.corpus import DATA

LOG = DATA / "heapprof.prof.nonthreaded.hb.eventlog"  # 199 collections, 14 major, 25 us .. 49 ms
LONG_PAUSES = 5  # alerts wanted: the log's five longest pauses


class Collect:
    """Another sink of the stream: what was submitted so far."""

    def __init__(self) -> None:
        self.points: list = []

    def submit(self, points) -> None:
        self.points.extend(points)


def pause_alerts(sub: Subscriber) -> list[dict]:
    return [p for _, p in sub.alerts() if p["alert"] == "gc_pause"]


async def test_a_long_pause_is_published_before_any_later_point_and_before_the_stream_ends(
        mosquitto, mqtt_topic):
    pauses = sorted(p.fields["pause_ns"] for p in gc_points(derive_points(LOG)))
    threshold = pauses[-LONG_PAUSES - 1]  # strictly over: the five longest
    cfg = MqttAlertConfig(host=mosquitto.host, port=mosquitto.port, topic_prefix=mqtt_topic,
                          pause_threshold_ms=threshold / 1e6, backoff_initial=0.05, backoff_max=0.5,
                          # a share rule that every window breaks, over a window longer than the
                          # log: its alert can only come when the window is judged, at the end
                          pause_share_threshold=1e-9, pause_share_window=3600.0)
    data = LOG.read_bytes()
    other = Collect()
    early = 0  # alerts received while the stream was live, before the next chunk was fed
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_topic) as sub:
        async with MqttAlertSink(cfg) as sink:
            await wait_until(lambda: sink.stats.connected, "a connection")
            # a short lag bound: the merge lets gc points out while the log streams in
            registry = StreamRegistry(DeriveConfig(max_lag=0.05), [other, sink])
            stream = registry(StreamInfo("file", str(LOG), 1))
            for i in range(0, len(data), 4096):
                made = sink.stats.alerts
                stream.data(data[i:i + 4096])
                new = sink.stats.alerts - made
                if not new:
                    continue
                # queued by the submit itself, before anything awaited
                assert sink.pending >= new
                submitted = len(other.points)
                assert sink.rules.open_windows == 1  # so every alert so far is a pause alert
                want = sink.stats.alerts
                # nothing more is fed until the broker hands the alert out: an alert held
                # for a later point, a window or a batch would never come here
                await wait_until(lambda n=want: len(pause_alerts(sub)) == n, "the pause alert")
                assert registry.live and len(other.points) == submitted
                early += new
                # the share window is still open: its alert has not gone out
                assert not [p for _, p in sub.alerts() if p["alert"] == "gc_pause_share"]
            stream.end(None)
            await wait_until(lambda: sink.pending == 0, "the rest published")
        await sub.sentinel()
    got = pause_alerts(sub)
    assert len(got) == LONG_PAUSES and all(p["pause_ns"] > threshold for p in got)
    assert early >= 1, "no pause alert came out before the end of the stream"
    # the share alert: judged when the sink closed (the window never ended), published then
    assert [p["alert"] for _, p in sub.alerts()].count("gc_pause_share") == 1
