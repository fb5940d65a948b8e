"""The alert sink's pure parts: settings, topic escaping."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.sinks.mqtt_config import MqttAlertConfig
from ingest.sinks.mqtt_messages import LEVEL_MAX_BYTES, alert_topic, topic_level


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
    {"topic_prefix": "a\x00b"}, {"topic_prefix": "a\nb"}, {"topic_prefix": "x" * 600},
    {"topic_prefix": "a\ud800"},
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


def _unquote(level: str) -> str:
    return unquote(level, errors="surrogatepass")


@given(st.text())
def test_topic_level_is_one_safe_bounded_level(text):
    level = topic_level(text)
    assert not set("/+#") & set(level)
    assert len(level.encode()) <= LEVEL_MAX_BYTES  # valid UTF-8: encode() raises otherwise
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in level)  # no control characters
    if len(text.encode("utf-8", "surrogatepass")) * 3 <= LEVEL_MAX_BYTES:  # fits even all escaped
        assert _unquote(level) == text
    elif _unquote(level) != text:  # cut: a prefix of the text, then ~ and a hash of all of it
        head, digest = level.rsplit("~", 1)
        assert len(digest) == 16 and text.startswith(_unquote(head))


@given(st.text(), st.text())
def test_topic_layout(app, session):
    levels = alert_topic("p/q", app, session).split("/")
    assert len(levels) == 6
    assert levels[:2] == ["p", "q"] and levels[4:] == ["alert", "gc_pause"]
    for level, text in zip(levels[2:4], (app, session)):
        if len(text.encode("utf-8", "surrogatepass")) * 3 <= LEVEL_MAX_BYTES:
            assert _unquote(level) == text


def test_a_huge_name_makes_a_short_level_and_names_stay_apart():
    a, b = topic_level("%" * 30_000), topic_level("%" * 29_999)
    assert a != b and a.startswith("%25%25") and len(a.encode()) <= LEVEL_MAX_BYTES
    assert topic_level("x" * LEVEL_MAX_BYTES) == "x" * LEVEL_MAX_BYTES


@pytest.mark.parametrize("text, level", [
    ("a\x00b", "a%00b"), ("tab\there", "tab%09here"), ("\x7f\x85", "%7F%C2%85"),
    ("\ufffe", "%EF%BF%BE"), ("\U0010ffff", "%F4%8F%BF%BF"), ("\ud800", "%ED%A0%80"),
    ("é/中+😀#%", "é%2F中%2B😀%23%25"),
])
def test_what_a_broker_refuses_is_percent_encoded(text, level):
    assert topic_level(text) == level
