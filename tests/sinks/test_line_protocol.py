"""Line-protocol escaping against a real influxd: every special character in
every position (measurement, tag key, tag value, field key, string field
value) is written through the sink in one batch and read back.

What InfluxDB 1.x cannot represent has a documented stand-in (module
docstring of ingest/derive/point.py): a trailing backslash in a name, key or
value, a newline there, and a measurement starting with ``#``.  ``expected``
below states those rules independently of the encoder.
"""

from __future__ import annotations

import pytest

from ingest.derive.point import Point
from ingest.rollups import RollupConfig, rp_points
from ingest.sinks import InfluxSink, InfluxSinkConfig
from tests.sinks.helpers import BASE_NS

SAMPLES = [
    "a,b", "a b", "a=b", 'a"b', "a\\b", "a\\", "a\\\\", "\\", "a\nb", "a\n",
    "é中😀", "a\\,b", "a\\ b", "a\\=b", 'a\\"b', ',= "\\x', "\\,", " lead", "trail ",
    "tab\there", "#hash", "a\rb",
]
POSITIONS = ["measurement", "tag key", "tag value", "field key", "string value"]


def expected(text: str, position: str) -> str:
    """What InfluxDB gives back: the text itself, except the stand-ins."""
    if position == "string value":
        return text
    specials = ', ="' if position in ("measurement", "field key") else ""
    out = []
    for i, ch in enumerate(text):     # backslashes at the end (names: also before , = space ")
        rest = text[i:].lstrip("\\")
        out.append("\uff3c" if ch == "\\" and (not rest or rest[0] in specials) else ch)
    text = "".join(out).replace("\n", "\\n")
    if position == "measurement" and text.startswith("#"):
        text = "\\" + text
    return text


def point(text: str, position: str, i: int) -> Point:
    t = BASE_NS + i
    if position == "measurement":
        return Point(text, {"case": str(i)}, {"n": i}, t)
    if position == "tag key":
        return Point("lp_tag_key", {text: "v", "case": str(i)}, {"n": i}, t)
    if position == "tag value":
        return Point("lp_tag_value", {"t": text, "case": str(i)}, {"n": i}, t)
    if position == "field key":
        return Point("lp_field_key", {"case": str(i)}, {text: i}, t)
    return Point("lp_string", {"case": str(i)}, {"s": text, "n": i}, t)


@pytest.fixture
async def written(influxd, influx_database):
    """Write every sample in every position in one batch; the sink must store all."""
    points = [point(s, pos, i) for i, (s, pos) in
              enumerate((s, pos) for pos in POSITIONS for s in SAMPLES)]
    cfg = InfluxSinkConfig(url=influxd.url, database=influx_database, batch_lines=100_000)
    async with InfluxSink(cfg) as sink:
        sink.submit(points)
        await sink.flush(timeout=30)
        assert sink.stats.dropped_4xx == 0, sink.stats.last_error
        assert sink.stats.written == len(points)
        assert sink.stats.batches == 1
    return influxd, influx_database


def _case_rows(server, database, measurement):
    rows = {}
    for s in server.series(f'SELECT * FROM "{measurement}"', database):
        for row in s["values"]:
            rec = dict(zip(s["columns"], row))
            rows[int(rec["case"])] = rec
    return rows


def _cases(position):
    base = POSITIONS.index(position) * len(SAMPLES)
    return [(base + k, s) for k, s in enumerate(SAMPLES)]


async def test_measurement_names_come_back(written):
    server, db = written
    names = {row[0] for s in server.series("SHOW MEASUREMENTS", db) for row in s["values"]}
    for _, text in _cases("measurement"):
        assert expected(text, "measurement") in names, text


async def test_tag_keys_come_back(written):
    server, db = written
    keys = {row[0] for s in server.series('SHOW TAG KEYS FROM "lp_tag_key"', db) for row in s["values"]}
    assert keys == {"case"} | {expected(t, "tag key") for t in SAMPLES}


async def test_tag_values_come_back(written):
    server, db = written
    rows = _case_rows(server, db, "lp_tag_value")
    for case, text in _cases("tag value"):
        assert rows[case]["t"] == expected(text, "tag value"), text


async def test_field_keys_come_back(written):
    server, db = written
    keys = {row[0] for s in server.series('SHOW FIELD KEYS FROM "lp_field_key"', db) for row in s["values"]}
    assert keys == {expected(t, "field key") for t in SAMPLES}


async def test_string_values_come_back_equal(written):
    server, db = written
    rows = _case_rows(server, db, "lp_string")
    for case, text in _cases("string value"):
        assert rows[case]["s"] == text, text


async def test_rollup_switch_points_use_the_same_encoder(influxd, influx_database):
    """The rp-switch points of ingest/rollups/rp_switch.py are written by the one encoder:
    names with the characters line protocol escapes come back equal."""
    cfg = RollupConfig.model_validate({"raw": {"name": "raw, =x"},
                                       "rp_switch": {"measurement": "rp, cfg="}})
    lines = rp_points(cfg)
    async with InfluxSink(InfluxSinkConfig(url=influxd.url, database=influx_database)) as sink:
        sink.submit(lines)
        await sink.flush(timeout=30)
        assert sink.stats.dropped_4xx == 0, sink.stats.last_error
        assert sink.stats.written == len(lines)
    measurement = cfg.rp_switch.measurement
    stored = {row[1] for s in influxd.series(f'SELECT "rp" FROM "{measurement}"', influx_database)
              for row in s["values"]}
    assert "raw, =x" in stored
    tags = {row[1] for s in influxd.series(f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "policy"',
                                           influx_database) for row in s["values"]}
    assert "raw, =x" in tags
