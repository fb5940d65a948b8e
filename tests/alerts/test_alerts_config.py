"""The alert sink's pure parts: settings, topic escaping."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.sinks.mqtt import MqttAlertConfig, alert_topic, topic_level


def test_defaults_are_the_documented_ones():
    cfg = MqttAlertConfig()
    assert (cfg.topic_prefix, cfg.qos, cfg.pause_share_threshold) == ("liveprof", 1, None)
    assert cfg.pause_threshold_ns == round(cfg.pause_threshold_ms * 1e6)
    assert cfg.endpoint() == ("127.0.0.1", 1883, False, None, None)


@pytest.mark.parametrize("ms, ns", [(0.5, 500_000), (100, 100_000_000), (0.000001, 1), (0, 0)])
def test_threshold_is_milliseconds(ms, ns):
    assert MqttAlertConfig(pause_threshold_ms=ms).pause_threshold_ns == ns


@pytest.mark.parametrize("bad", [
    {"topic_prefix": "a/#"}, {"topic_prefix": "a+b"}, {"topic_prefix": "/"},
    {"url": "http://x"}, {"url": "mqtt://x:99999"}, {"nope": 1}, {"qos": 3},
    {"password": "p"}, {"queue_size": 0}, {"pause_share_threshold": 1.5},
    {"backoff_initial": 5, "backoff_max": 1},
])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        MqttAlertConfig(**bad)


def test_url_gives_host_port_tls_and_credentials():
    cfg = MqttAlertConfig(url="mqtts://al%40ice:s%2Fcret@broker.example:8884", username="x")
    assert cfg.endpoint() == ("broker.example", 8884, True, "al@ice", "s/cret")
    assert MqttAlertConfig(url="mqtts://b").endpoint()[:3] == ("b", 8883, True)
    assert MqttAlertConfig(url="mqtt://b", username="u", password="p").endpoint() == \
        ("b", 1883, False, "u", "p")
    assert "p" not in repr(MqttAlertConfig(username="u", password="p").password)


def test_prefix_trailing_slash_is_dropped():
    assert MqttAlertConfig(topic_prefix="site/liveprof/").topic_prefix == "site/liveprof"


@given(st.text())
def test_topic_level_is_one_level_and_reversible(text):
    level = topic_level(text)
    assert not set("/+#\0") & set(level)
    assert unquote(level) == text


@given(st.text(), st.text())
def test_topic_layout(app, session):
    levels = alert_topic("p/q", app, session).split("/")
    assert len(levels) == 6
    assert levels[:2] == ["p", "q"] and levels[4:] == ["alert", "gc_pause"]
    assert [unquote(levels[2]), unquote(levels[3])] == [app, session]
