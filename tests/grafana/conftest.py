"""A real InfluxDB filled from corpus logs the way a user fills it, for the
Grafana tests: ``liveprof influx setup``, derived points, ``liveprof influx
backfill`` (all through the CLI, as child processes).

Time: the corpus logs were recorded at different dates (2017 to now), so each
log's points are moved, whole, to start at one fixed instant ``T0`` (the
line protocol's timestamps shifted by one offset per log): every dashboard
then has every kind of data in one time range, as a live system would.  T0
is long past, so the policies of this test database keep their points for
ever (``--raw-duration INF``, rollups ``INF``): with the default 7 days raw
(90 days for 1m, 3 years for 1h) InfluxDB would drop these points on write.
Nothing else differs from the defaults: rollups 1m and 1h, the same rp_config
switch points (derived from the intervals, which are the defaults').
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from yaml import safe_load as load_yaml

from ingest.rollups import RetentionPolicy, Rollup, RollupConfig

from .grafana_sim import Influx

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
GRAFANA = REPO / "grafana"
DATASOURCE_FILE = GRAFANA / "provisioning" / "datasources" / "influxdb.yaml"

PLUGIN = "tests.servers_fixtures"

# which logs, on which host: between them every measurement a panel reads
# (gc, heap, capability, threads with labels, spans, markers with text,
# heap_profile, nonmoving phases) and two hosts for the multi-value variables
LOGS = {
    "heapprof.prof.nonthreaded.hb": "host-a",
    "threads-mvar.nonthreaded.l": "host-a",
    "nonmoving-gc-census": "host-b",
    "testlog": "host-b",
}
T0_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
SCHEME_FLAGS = ["--raw-duration", "INF", "--rollup", "1m:1m:INF:10m", "--rollup", "1h:1h:INF:2h"]
SCHEME = RollupConfig(raw=RetentionPolicy(name="raw", duration="INF"), rollups=[
    Rollup(name="1m", interval="1m", duration="INF", resample_for="10m"),
    Rollup(name="1h", interval="1h", duration="INF", resample_for="2h")])


def pytest_configure(config):
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)


def go_expand_env(text: str, env: dict[str, str]) -> str:
    """Grafana's provisioning interpolation: ``$$`` is a literal ``$``; in
    between, Go's os.ExpandEnv (``$VAR``, ``${VAR}``; unset is empty)."""
    def expand(part: str) -> str:
        return re.sub(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)",
                      lambda m: env.get(m.group(1) or m.group(2), ""), part)
    return "$".join(expand(p) for p in text.split("$$"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPROF_")}
    proc = subprocess.run([sys.executable, "-m", "ingest.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 1) if args[0] == "derive" else proc.returncode == 0, \
        f"liveprof {' '.join(args)}: {proc.returncode}\n{proc.stderr[-2000:]}"
    return proc


def shifted(lines: list[str], to_ms: int) -> list[str]:
    """The points moved so that the earliest is at ``to_ms``."""
    stamps = [int(line.rsplit(" ", 1)[1]) for line in lines]
    offset = to_ms * 1_000_000 - min(stamps)
    return [f"{line.rsplit(' ', 1)[0]} {t + offset}" for line, t in zip(lines, stamps)]


@dataclass
class Stack:
    influx: Influx
    database: str
    points: dict[str, list[str]]  # log -> its shifted line protocol
    end_ms: int                   # just after the last point

    def lines(self, measurement: str) -> list[str]:
        return [ln for pts in self.points.values() for ln in pts
                if re.match(re.escape(measurement) + r"[, ]", ln)]


@pytest.fixture(scope="session")
def stack(influxd) -> Stack:
    if not influxd.running:
        influxd.start()
    database = f"grafana_{uuid.uuid4().hex[:10]}"
    # the datasource exactly as Grafana provisions it, from the environment
    env = {"INFLUX_URL": influxd.url, "INFLUX_DATABASE": database, "INFLUX_USER": "",
           "INFLUX_PASSWORD": ""}
    ds = load_yaml(go_expand_env(DATASOURCE_FILE.read_text(), env))["datasources"][0]
    influx = Influx(ds["url"], ds["jsonData"]["dbName"], ds.get("user") or "",
                    ds.get("secureJsonData", {}).get("password") or "")

    _cli("influx", "setup", "--influx-url", influxd.url, "--database", database, *SCHEME_FLAGS)
    points = {}
    for log, host in LOGS.items():
        out = _cli("derive", str(DATA / f"{log}.eventlog"), "--host", host).stdout
        points[log] = shifted([ln for ln in out.splitlines() if ln], T0_MS)
        for i in range(0, len(points[log]), 5000):
            influxd.write(points[log][i:i + 5000], database)
    end_ms = max(int(ln.rsplit(" ", 1)[1]) for pts in points.values() for ln in pts) // 1_000_000 + 1
    _cli("influx", "backfill", "--influx-url", influxd.url, "--database", database, *SCHEME_FLAGS,
         "--start", str((T0_MS - 3_600_000) * 1_000_000), "--end", str((end_ms + 3_600_000) * 1_000_000))
    try:
        yield Stack(influx, database, points, end_ms)
    finally:
        if not influxd.running:
            influxd.start()
        influxd.drop_database(database)
