"""InfluxSinkConfig: nested sections (batch, buffer, retry), the flat keys of
earlier versions from every source of settings, and one setting given both
ways refused with a message that names both."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest.config import load
from ingest.errors import ConfigError
from ingest.sinks import InfluxSinkConfig
from ingest.sinks.influxdb.config import FLAT_KEYS

NESTED = {"batch": {"lines": 7, "bytes": 9000, "flush_interval": 0.5, "max_in_flight": 2,
                    "gzip": False, "gzip_level": 3},
          "buffer": {"memory_max_bytes": 5000, "spool_dir": "/var/tmp/lp-spool", "spool_max_bytes": 40_000,
                     "spool_segment_bytes": 10_000, "spill_after": 2.0},
          "retry": {"base_delay": 0.1, "max_delay": 4.0, "max_attempts": 6}}
FLAT = {"batch_lines": 7, "batch_bytes": 9000, "flush_interval": 0.5, "max_in_flight": 2, "gzip": False,
        "gzip_level": 3, "memory_max_bytes": 5000, "spool_dir": "/var/tmp/lp-spool",
        "spool_max_bytes": 40_000, "spool_segment_bytes": 10_000, "spill_after": 2.0,
        "retry_base_delay": 0.1, "retry_max_delay": 4.0, "retry_max_attempts": 6}


def test_every_flat_key_sets_the_same_setting_as_its_nested_key():
    assert set(FLAT) == set(FLAT_KEYS)
    nested = InfluxSinkConfig(**NESTED)
    assert InfluxSinkConfig(**FLAT) == nested
    assert nested.batch.lines == 7 and nested.buffer.spool_dir == Path("/var/tmp/lp-spool")
    assert nested.retry.max_attempts == 6
    default = InfluxSinkConfig()
    for key, (section, name) in FLAT_KEYS.items():  # and each alone
        alone = {key: FLAT[key], **({"batch_bytes": 9000} if key == "spool_max_bytes" else {})}
        one = InfluxSinkConfig(**alone)
        assert getattr(getattr(one, section), name) == getattr(getattr(nested, section), name), key
        assert getattr(getattr(one, section), name) != getattr(getattr(default, section), name), key


def test_flat_and_nested_keys_mix_when_they_name_different_settings():
    cfg = InfluxSinkConfig(batch_lines=11, batch={"bytes": 3000}, retry_max_attempts=2)
    assert (cfg.batch.lines, cfg.batch.bytes, cfg.retry.max_attempts) == (11, 3000, 2)


def test_one_setting_given_flat_and_nested_is_an_error_naming_both():
    with pytest.raises(ValidationError, match=r"batch_lines and batch\.lines are the same setting"):
        InfluxSinkConfig(batch_lines=5, batch={"lines": 6})
    with pytest.raises(ConfigError) as info:
        load(None, {"influx.retry_base_delay": 0.1, "influx.retry.base_delay": 0.3})
    text = str(info.value)
    assert "influx.retry_base_delay" in text and "influx.retry.base_delay" in text and "given twice" in text


def test_an_error_about_a_flat_key_names_the_flat_key(monkeypatch):
    with pytest.raises(ValidationError) as info:
        InfluxSinkConfig(batch_lines=0)
    assert [e["loc"] for e in info.value.errors()] == [("batch_lines",)]
    monkeypatch.setenv("LIVEPROF_INFLUX_RETRY_MAX_DELAY", "0.01")
    with pytest.raises(ConfigError) as info:
        load()
    assert "LIVEPROF_INFLUX_RETRY_MAX_DELAY: retry.max_delay (0.01) must be >=" in str(info.value)


def test_an_error_about_a_nested_key_names_the_nested_key():
    with pytest.raises(ConfigError) as info:
        load(None, {"influx.buffer.spool_max_bytes": 100})
    assert "setting influx.buffer.spool_max_bytes: 100 cannot hold 4 batches" in str(info.value)


def test_flat_keys_come_from_toml_and_environment(tmp_path, monkeypatch):
    for key in FLAT_KEYS:
        monkeypatch.delenv(f"LIVEPROF_INFLUX_{key.upper()}", raising=False)
    toml = tmp_path / "liveprof.toml"
    toml.write_text('[influx]\nbatch_lines = 70\nspool_dir = "/var/tmp/a"\n\n'
                    '[influx.retry]\nmax_attempts = 3\n')
    monkeypatch.setenv("LIVEPROF_INFLUX_FLUSH_INTERVAL", "0.25")
    monkeypatch.setenv("LIVEPROF_INFLUX_BUFFER", '{"spill_after": 1.5}')
    cfg = load(toml).influx
    assert cfg.batch.lines == 70 and cfg.batch.flush_interval == 0.25
    assert cfg.buffer.spool_dir == Path("/var/tmp/a") and cfg.buffer.spill_after == 1.5
    assert cfg.retry.max_attempts == 3


def test_updated_applies_flat_and_nested_overrides_to_a_config():
    base = InfluxSinkConfig(batch={"lines": 10, "bytes": 2000}, spool_dir="/var/tmp/b")
    cfg = base.updated({"batch_lines": 20, "buffer": {"spool_dir": None}, "timeout": 3.0})
    assert (cfg.batch.lines, cfg.batch.bytes, cfg.buffer.spool_dir, cfg.timeout) == (20, 2000, None, 3.0)
    assert base.batch.lines == 10  # frozen: a new config


def test_the_sink_service_settings_put_the_spool_under_the_state_dir(tmp_path):
    settings = load(None, {"state_dir": str(tmp_path), "influx.batch_lines": 9})
    sink = settings.sink_config()
    assert sink.buffer.spool_dir == tmp_path / "spool" and sink.batch.lines == 9
    assert sink.create_database and sink.retention_policy == settings.rollups.raw.name
