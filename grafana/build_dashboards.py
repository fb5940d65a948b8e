"""Writes grafana/dashboards/*.json, the provisioned liveprof dashboards.

The dashboards are data: this script is where they are written down, once,
with the conventions that keep every query right on the raw policy and on
the rollups (docs/dashboards.md):

- every query reads ``FROM "$rp"."<measurement>"``; ``$rp`` comes from the
  ``forever.rp_config`` points that ``liveprof influx setup`` writes, chosen
  by the length of the dashboard's time range (``$__to - $__from``);
- a question whose answer is the same aggregate on every level (a sum of
  sums, a max of maxima) has one target;
- a question asked differently of raw points (one per event) and of rollup
  points (``pause_ns_max``, ``pause_ns_count``, ``_sum``/``_count`` weights)
  has two targets, one guarded by ``'$rp_kind' = 'raw'`` and one by
  ``'$rp_kind' = 'rollup'``: InfluxDB answers the false one with nothing, so
  a panel shows the right one for the range, under the same legend;
- each selected expression is named with ``AS`` (tests/grafana checks the
  columns InfluxDB returns against these names); a ``last()`` asked only for
  the time of the latest point, whose value differs between levels, is named
  ``seen_...`` and hidden;
- a panel's min interval is ``$rp_interval``, the chosen policy's own
  interval, so ``$__interval`` never asks a rollup for finer buckets than it
  has.

Run ``python grafana/build_dashboards.py`` after editing; tests/grafana checks
that the committed JSON is what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DS_UID = "liveprof-influxdb"
DS = {"type": "influxdb", "uid": DS_UID}
OUT = Path(__file__).resolve().parent / "dashboards"

FILTER = '"app" =~ /^$app$/ AND "host" =~ /^$host$/ AND "session" =~ /^$session$/ AND $timeFilter'
RAW = " AND '$rp_kind' = 'raw'"
ROLLUP = " AND '$rp_kind' = 'rollup'"
RP_WHERE = 'WHERE $__to - $__from > "start" AND $__to - $__from <= "end"'


def q(select: str, measurement: str, *, guard: str = "", where: str = FILTER,
      group: str = "time($__interval)", tags: tuple[str, ...] = (), fill: str = "fill(none)",
      tail: str = "") -> str:
    by = ", ".join([group] * bool(group) + [f'"{t}"' for t in tags])
    text = f'SELECT {select} FROM "$rp"."{measurement}" WHERE {where}{guard}'
    if by:
        text += f" GROUP BY {by}"
    if fill and group:
        text += f" {fill}"
    if tail:
        text += f" {tail}"
    return text


def target(ref: str, query: str, *, alias: str = "", fmt: str = "time_series") -> dict:
    t = {"refId": ref, "datasource": DS, "query": query, "rawQuery": True, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


class Layout:
    """Panels two abreast, full-width ones alone, in order."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = self.y = 0
        self.next_id = 1

    def add(self, title: str, kind: str, targets: list[dict], *, unit: str = "", width: int = 12,
            height: int = 8, description: str = "", options: dict | None = None,
            custom: dict | None = None, transformations: list | None = None,
            min_interval: bool = True) -> None:
        if self.x + width > 24:
            self.x, self.y = 0, self.y + height
        panel = {
            "id": self.next_id, "type": kind, "title": title, "datasource": DS,
            "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, **({"custom": custom} if custom else {})},
                            "overrides": []},
            "options": options or {},
        }
        if min_interval:
            panel["interval"] = "$rp_interval"
        if description:
            panel["description"] = description
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        self.next_id += 1
        self.x += width
        if self.x >= 24:
            self.x, self.y = 0, self.y + height


def query_var(name: str, query: str, *, label: str = "", multi: bool = True, hide: int = 0,
              refresh: int = 1, sort: int = 1) -> dict:
    return {
        "name": name, "label": label or name, "type": "query", "datasource": DS,
        "query": query, "definition": query, "refresh": refresh, "hide": hide,
        "multi": multi, "includeAll": multi, "sort": sort, "regex": "",
        "current": {}, "options": [],
    }


def rp_vars() -> list[dict]:
    """The policy for the time range, its kind and its interval: three reads
    of the same ``rp_config`` point (refreshed on every time range change)."""
    src = 'FROM "forever"."rp_config" ' + RP_WHERE
    return [
        query_var("rp", f'SELECT "rp" {src}', label="Retention policy", multi=False, refresh=2,
                  sort=0),
        query_var("rp_kind", f'SELECT "kind" {src}', multi=False, refresh=2, hide=2, sort=0),
        query_var("rp_interval", f'SELECT "interval" {src}', multi=False, refresh=2, hide=2, sort=0),
    ]


def common_vars(session_from: str = "session", session_multi: bool = True) -> list[dict]:
    return [
        query_var("app", 'SHOW TAG VALUES FROM "session" WITH KEY = "app"', label="App"),
        query_var("host", 'SHOW TAG VALUES FROM "session" WITH KEY = "host" WHERE "app" =~ /^$app$/',
                  label="Host"),
        query_var("session", f'SHOW TAG VALUES FROM "{session_from}" WITH KEY = "session" '
                             'WHERE "app" =~ /^$app$/ AND "host" =~ /^$host$/',
                  label="Session", multi=session_multi),
    ]


MARKERS = {
    "name": "Markers", "enable": True, "iconColor": "#8AB8FF", "datasource": DS,
    "query": 'SELECT "text" AS "text" FROM "$rp"."markers" WHERE ' + FILTER,
    "textColumn": "text", "tagsColumn": "", "titleColumn": "",
}


def dashboard(uid: str, title: str, layout: Layout, variables: list[dict], *,
              annotations: list[dict] = (), time_from: str = "now-1h") -> dict:
    return {
        "uid": uid, "title": title, "tags": ["liveprof"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
             "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "name": "Annotations & Alerts", "type": "dashboard"},
            *annotations]},
        "links": [{"type": "dashboards", "tags": ["liveprof"], "asDropdown": True,
                   "title": "liveprof", "includeVars": True, "keepTime": True}],
        "panels": layout.panels,
    }


STACKED = {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40}
POINTS = {"drawStyle": "points", "pointSize": 4}
TABLE_OPTS = {"showHeader": True}


# -- Overview -----------------------------------------------------------------------------------

def overview() -> dict:
    lay = Layout()
    lay.add("GC pause: longest and p99 per interval", "timeseries", [
        target("A", q('max("pause_ns") AS "longest", percentile("pause_ns", 99) AS "p99"', "gc",
                      guard=RAW, tags=("app",)), alias="$tag_app $col"),
        target("B", q('max("pause_ns_max") AS "longest", sum("pause_ns") / sum("pause_ns_count") AS "mean"',
                      "gc", guard=ROLLUP, tags=("app",)), alias="$tag_app $col"),
    ], unit="ns", description="On raw points: the longest collection and the 99th percentile of the "
                              "collections in each interval. A rollup keeps no single collections: "
                              "there the longest pause and the mean pause.")
    lay.add("GC rate by generation", "timeseries", [
        target("A", q('count("pause_ns") * 1000 / $__interval_ms AS "per_s"', "gc", guard=RAW,
                      tags=("gen",)), alias="gen $tag_gen"),
        target("B", q('sum("pause_ns_count") * 1000 / $__interval_ms AS "per_s"', "gc", guard=ROLLUP,
                      tags=("gen",)), alias="gen $tag_gen"),
    ], unit="ops", description="Collections per second, by generation collected.")
    lay.add("Heap size and live data (peaks)", "timeseries", [
        target("A", q('max("size_max_bytes") AS "size", max("live_max_bytes") AS "live"', "heap",
                      tags=("app",)), alias="$tag_app $col"),
    ], unit="bytes", description="Largest heap size and live data posted in each interval (the "
                                 "maximum of maxima: the same on every policy).")
    lay.add("Allocation rate", "timeseries", [
        target("A", q('sum("allocated_bytes") * 1000 / $__interval_ms AS "alloc"', "heap",
                      tags=("app",)), alias="$tag_app"),
    ], unit="Bps", description="Bytes allocated per second: the sum over the interval divided by "
                               "its length (exact on every policy).")
    lay.add("Capability utilisation", "timeseries", [
        target("A", q('sum("mutator_ns") / (sum("mutator_ns") + sum("gc_ns") + sum("idle_ns")) AS "mutator", '
                      'sum("gc_ns") / (sum("mutator_ns") + sum("gc_ns") + sum("idle_ns")) AS "gc", '
                      'sum("idle_ns") / (sum("mutator_ns") + sum("gc_ns") + sum("idle_ns")) AS "idle"',
                      "capability"), alias="$col"),
    ], unit="percentunit", custom=STACKED,
        description="Share of the capabilities' time spent running Haskell code, in GC and idle.")
    lay.add("Busiest thread labels", "bargauge", [
        target("A", q('sum("runtime_ns") AS "runtime"', "threads", group="", tags=("label",)),
               alias="$tag_label"),
    ], unit="ns", min_interval=False,
        options={"orientation": "horizontal", "displayMode": "gradient",
                 "reduceOptions": {"calcs": ["sum"], "values": False}},
        description="Run time per thread label over the range (the top labels per window; the "
                    "rest are summed as other).")
    lay.add("Active sessions", "table", [
        target("A", q('sum("mutator_ns") AS "mutator_ns", sum("gc_ns") AS "gc_ns"', "capability",
                      group="", tags=("app", "host", "session")), fmt="table"),
    ], width=24, height=6, options=TABLE_OPTS, min_interval=False,
        description="Sessions with capability activity in the range, with their time running "
                    "Haskell code and in GC over the range.")
    return dashboard("liveprof-overview", "liveprof / Overview", lay,
                     rp_vars() + common_vars(), annotations=[MARKERS])


# -- GC -------------------------------------------------------------------------------------------

def gc() -> dict:
    lay = Layout()
    lay.add("Collections", "timeseries", [
        target("A", q('"pause_ns" AS "pause"', "gc", guard=RAW, group="", tags=("gen",),
                      tail="ORDER BY time DESC LIMIT 5000"), alias="gen $tag_gen"),
        target("B", q('max("pause_ns_max") AS "pause"', "gc", guard=ROLLUP, tags=("gen",)),
               alias="gen $tag_gen"),
    ], unit="ns", custom=POINTS, width=24,
        description="On raw points each collection (the latest 5000 per generation); on rollups "
                    "the longest collection of each interval.")
    lay.add("Pause distribution", "histogram", [
        target("A", q('"pause_ns" AS "pause"', "gc", guard=RAW, group="",
                      tail="ORDER BY time DESC LIMIT 20000")),
        target("B", q('"pause_ns_max" AS "pause"', "gc", guard=ROLLUP, group="")),
    ], unit="ns", options={"bucketCount": 30},
        description="Raw: every collection's pause (latest 20000). Rollups: the longest pause of "
                    "each rollup interval.")
    lay.add("Copied bytes", "timeseries", [
        target("A", q('sum("copied_bytes") AS "copied"', "gc", tags=("gen",)), alias="gen $tag_gen"),
    ], unit="bytes", custom=STACKED)
    lay.add("Parallel GC work balance", "timeseries", [
        target("A", q('sum("par_balanced_copied_bytes") / sum("par_tot_copied_bytes") AS "balance"', "gc",
                      tags=("app",)), alias="$tag_app"),
    ], unit="percentunit", description="Balanced copied bytes over all copied bytes in the interval "
                                       "(0: one GC thread did all the copying, 1: evenly spread; 0 "
                                       "for a single-threaded GC).")
    lay.add("Collections and time in sync", "timeseries", [
        target("A", q('count("pause_ns") AS "collections", sum("sync_ns") AS "sync"', "gc",
                      guard=RAW, tags=("kind",)), alias="$tag_kind $col"),
        target("B", q('sum("pause_ns_count") AS "collections", sum("sync_ns") AS "sync"', "gc",
                      guard=ROLLUP, tags=("kind",)), alias="$tag_kind $col"),
    ], description="Collections per interval by kind (major/minor), and the time spent bringing "
                   "the capabilities to a stop (threaded RTS only).")
    lay.add("Concurrent (non-moving) GC phases", "timeseries", [
        target("A", q('sum("duration_ns") AS "total", max("duration_ns") AS "longest"', "nonmoving",
                      guard=RAW, tags=("phase",)), alias="$tag_phase $col"),
        target("B", q('sum("duration_ns") AS "total", max("duration_ns_max") AS "longest"', "nonmoving",
                      guard=ROLLUP, tags=("phase",)), alias="$tag_phase $col"),
    ], unit="ns", width=24, description="Mark, sync and sweep phases of the non-moving collector: "
                                        "time per interval and the longest phase.")
    return dashboard("liveprof-gc", "liveprof / GC", lay, rp_vars() + common_vars(),
                     annotations=[MARKERS])


# -- Threads & spans --------------------------------------------------------------------------

def threads() -> dict:
    lay = Layout()
    lay.add("Run time by thread label", "timeseries", [
        target("A", q('sum("runtime_ns") AS "runtime"', "threads", tags=("label",)), alias="$tag_label"),
    ], unit="ns", custom=STACKED)
    lay.add("Time in spans by label", "timeseries", [
        target("A", q('sum("time_ns") AS "time"', "spans", tags=("label",)), alias="$tag_label"),
    ], unit="ns", custom=STACKED, description="ghc-events-analyze spans (START/STOP user messages).")
    lay.add("Span totals (ghc-events-analyze)", "table", [
        target("A", q('sum("time_ns") AS "time_ns", sum("starts") AS "starts", sum("stops") AS "stops"',
                      "spans", group="", tags=("label",)), fmt="table"),
    ], options=TABLE_OPTS)
    lay.add("Thread totals by label", "table", [
        target("A", q('sum("runtime_ns") AS "runtime_ns", sum("runs") AS "runs"', "threads", group="",
                      tags=("label",)), fmt="table"),
    ], options=TABLE_OPTS)
    reasons = ("mvar", "mvar_read", "black_hole", "stm", "delay", "read", "write", "do_proc",
               "ccall", "ccall_interruptible", "throw_to", "other")
    lay.add("Threads created, finished and blocked", "timeseries", [
        target("A", q('sum("created") AS "created", sum("finished") AS "finished", sum("blocked") AS "blocked"',
                      "threads"), alias="$col"),
    ])
    lay.add("Blocked by reason", "timeseries", [
        target("A", q(", ".join(f'sum("blocked_{r}") AS "{r}"' for r in reasons), "threads"),
               alias="$col"),
    ], custom=STACKED)
    return dashboard("liveprof-threads", "liveprof / Threads & spans", lay, rp_vars() + common_vars(),
                     annotations=[MARKERS])


# -- Heap profile -------------------------------------------------------------------------------

def heap_profile() -> dict:
    where = '"session" =~ /^$session$/ AND "mode" =~ /^$mode$/ AND $timeFilter'
    lay = Layout()
    lay.add("Residency by label", "timeseries", [
        target("A", q('mean("residency_bytes") AS "residency"', "heap_profile", where=where, guard=RAW,
                      tags=("label",)), alias="$tag_label"),
        target("B", q('sum("residency_bytes_sum") / sum("residency_bytes_count") AS "residency"',
                      "heap_profile", where=where, guard=ROLLUP, tags=("label",)), alias="$tag_label"),
    ], unit="bytes", custom=STACKED, width=24, height=10,
        description="Mean residency per label over the censuses of each interval, for the chosen "
                    "session and breakdown (top labels per census; the rest summed as other).")
    lay.add("Peak residency by label", "bargauge", [
        target("A", q('max("residency_bytes") AS "peak"', "heap_profile", where=where, guard=RAW,
                      group="", tags=("label",)), alias="$tag_label"),
        target("B", q('max("residency_bytes_max") AS "peak"', "heap_profile", where=where, guard=ROLLUP,
                      group="", tags=("label",)), alias="$tag_label"),
    ], unit="bytes", width=24, options={"orientation": "horizontal", "displayMode": "gradient",
                                        "reduceOptions": {"calcs": ["max"], "values": False}})
    variables = rp_vars() + common_vars(session_from="heap_profile", session_multi=False) + [
        query_var("mode", 'SHOW TAG VALUES FROM "heap_profile" WITH KEY = "mode" '
                          'WHERE "session" =~ /^$session$/', label="Breakdown", multi=False),
    ]
    return dashboard("liveprof-heap-profile", "liveprof / Heap profile", lay, variables,
                     annotations=[MARKERS])


# -- Sessions ------------------------------------------------------------------------------------

def sessions() -> dict:
    lay = Layout()
    lay.add("Sessions", "table", [
        target("A", q('last("program") AS "program", last("args") AS "args", last("rts") AS "rts", '
                      'last("pid") AS "pid", last("caps") AS "caps"', "session", group="",
                      tags=("app", "host", "session")), fmt="table"),
        target("B", q('last("mutator_ns") AS "seen_last"', "capability", group="",
                      tags=("app", "host", "session")), fmt="table"),
    ], width=24, height=16, options=TABLE_OPTS, min_interval=False,
        transformations=[
            {"id": "joinByField", "options": {"byField": "session", "mode": "outer"}},
            {"id": "organize", "options": {
                "renameByName": {"Time 1": "start", "Time 2": "end (last window)"},
                "excludeByName": {"seen_last": True, "app 2": True, "host 2": True}}},
        ],
        description="One row per session that started in the range: program, arguments, RTS, "
                    "start (the RTS start) and end (the start of its last capability window).")
    return dashboard("liveprof-sessions", "liveprof / Sessions", lay, rp_vars() + common_vars(),
                     time_from="now-7d")


DASHBOARDS = {
    "overview.json": overview,
    "gc.json": gc,
    "threads-spans.json": threads,
    "heap-profile.json": heap_profile,
    "sessions.json": sessions,
}


def render() -> dict[str, str]:
    return {name: json.dumps(make(), indent=2) + "\n" for name, make in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
