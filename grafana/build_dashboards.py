"""Writes grafana/dashboards/*.json, the provisioned liveprof dashboards.

The dashboards are built with grafana-foundation-sdk, Grafana's typed
builders, in its 11.2 build (docker-compose runs grafana-oss 11.2): a
build-time tool, installed with ``pip install -e '.[dashboards]'`` (or the
``test`` extra), never imported by liveprof itself.  This script is where the
dashboards are written down, once, with the conventions that keep every
query right on the raw policy and on the rollups (docs/dashboards.md):

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

The SDK's 11.2 build has no InfluxDB query type, and its annotation model no
place for InfluxQL's ``query`` and ``textColumn``: ``influxql.py`` beside this
file adds both as typed cog models and builders.

Run ``python grafana/build_dashboards.py`` after editing; tests/grafana checks
that the committed JSON is what this script writes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, dashboard, histogram, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as model
from influxql import DS, AnnotationQuery, Query

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


def target(ref: str, query: str, *, alias: str = "") -> Query:
    t = Query(ref, query)
    return t.alias(alias) if alias else t


def table_target(ref: str, query: str) -> Query:
    return Query(ref, query).result_format("table")


PanelBuilder = timeseries.Panel | table.Panel | bargauge.Panel | histogram.Panel


def panel(p: PanelBuilder, title: str, targets: Sequence[Query], *, unit: str = "", width: int = 12,
          height: int = 8, description: str = "", min_interval: bool = True) -> PanelBuilder:
    """What every panel has: the datasource, its targets, size, unit and, on
    a time axis, ``$rp_interval`` as its min interval.  Position and id are
    the dashboard's (``build``)."""
    p = p.title(title).datasource(DS).targets(list(targets)).span(width).height(height)
    if unit:
        p = p.unit(unit)
    if min_interval:
        p = p.interval("$rp_interval")
    if description:
        p = p.description(description)
    return p


def stacked(p: timeseries.Panel) -> timeseries.Panel:
    return p.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL).group("A")).fill_opacity(40)


def horizontal_bars(calc: str) -> bargauge.Panel:
    return (bargauge.Panel().orientation(common.VizOrientation.HORIZONTAL)
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .reduce_options(common_b.ReduceDataOptions().calcs([calc]).values(False)))


def query_var(name: str, query: str, *, label: str = "", multi: bool = True,
              hide: model.VariableHide = model.VariableHide.DONT_HIDE,
              refresh: model.VariableRefresh = model.VariableRefresh.ON_DASHBOARD_LOAD,
              sort: model.VariableSort = model.VariableSort.ALPHABETICAL_ASC) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(name).label(label or name).datasource(DS).query(query)
            .refresh(refresh).hide(hide).multi(multi).include_all(multi).sort(sort).regex("")
            .options([]))


def rp_vars() -> list[dashboard.QueryVariable]:
    """The policy for the time range, its kind and its interval: three reads
    of the same ``rp_config`` point (refreshed on every time range change)."""
    def read(name: str, fld: str, label: str = "",
             hide: model.VariableHide = model.VariableHide.HIDE_VARIABLE) -> dashboard.QueryVariable:
        return query_var(name, f'SELECT "{fld}" FROM "forever"."rp_config" {RP_WHERE}', label=label,
                         multi=False, hide=hide, refresh=model.VariableRefresh.ON_TIME_RANGE_CHANGED,
                         sort=model.VariableSort.DISABLED)
    return [read("rp", "rp", "Retention policy", model.VariableHide.DONT_HIDE),
            read("rp_kind", "kind"), read("rp_interval", "interval")]


def common_vars(session_from: str = "session", session_multi: bool = True) -> list[dashboard.QueryVariable]:
    return [
        query_var("app", 'SHOW TAG VALUES FROM "session" WITH KEY = "app"', label="App"),
        query_var("host", 'SHOW TAG VALUES FROM "session" WITH KEY = "host" WHERE "app" =~ /^$app$/',
                  label="Host"),
        query_var("session", f'SHOW TAG VALUES FROM "{session_from}" WITH KEY = "session" '
                             'WHERE "app" =~ /^$app$/ AND "host" =~ /^$host$/',
                  label="Session", multi=session_multi),
    ]


def markers() -> AnnotationQuery:
    return (AnnotationQuery("Markers").icon_color("#8AB8FF")
            .query('SELECT "text" AS "text" FROM "$rp"."markers" WHERE ' + FILTER).text_column("text"))


def build(uid: str, title: str, panels: list[PanelBuilder], variables: list[dashboard.QueryVariable], *,
          annotations: Sequence[AnnotationQuery] = (), time_from: str = "now-1h") -> model.Dashboard:
    """The dashboard around its panels: numbered in order and placed by the
    SDK's grid, left to right and a new row when one is full (it does not
    wrap a panel too wide for what is left of a row: keep half-width panels
    in pairs; tests/grafana checks that none overflows)."""
    builtin = (dashboard.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True).hide(True)
               .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
               .icon_color("rgba(0, 211, 255, 1)").type("dashboard"))
    dash = (dashboard.Dashboard(title).uid(uid).tags(["liveprof"]).editable().version(1).refresh("30s")
            .timezone("").time(time_from, "now").variables(list(variables))
            .annotations([builtin, *annotations])
            .link(dashboard.DashboardLink("liveprof").type(model.DashboardLinkType.DASHBOARDS)
                  .tags(["liveprof"]).as_dropdown(True).include_vars(True).keep_time(True)))
    for n, p in enumerate(panels, 1):
        dash = dash.with_panel(p.id(n))
    return dash.build()


NS, BYTES = units.Nanoseconds, units.BytesIEC
CAP_TOTAL = 'sum("mutator_ns") + sum("gc_ns") + sum("idle_ns")'


# -- Overview -----------------------------------------------------------------------------------

def overview() -> model.Dashboard:
    panels: list[PanelBuilder] = [
        panel(timeseries.Panel(), "GC pause: longest and p99 per interval", [
            target("A", q('max("pause_ns") AS "longest", percentile("pause_ns", 99) AS "p99"', "gc",
                          guard=RAW, tags=("app",)), alias="$tag_app $col"),
            target("B", q('max("pause_ns_max") AS "longest", '
                          'sum("pause_ns") / sum("pause_ns_count") AS "mean"',
                          "gc", guard=ROLLUP, tags=("app",)), alias="$tag_app $col"),
        ], unit=NS, description="On raw points: the longest collection and the 99th percentile of the "
                                "collections in each interval. A rollup keeps no single collections: "
                                "there the longest pause and the mean pause."),
        panel(timeseries.Panel(), "GC rate by generation", [
            target("A", q('count("pause_ns") * 1000 / $__interval_ms AS "per_s"', "gc", guard=RAW,
                          tags=("gen",)), alias="gen $tag_gen"),
            target("B", q('sum("pause_ns_count") * 1000 / $__interval_ms AS "per_s"', "gc", guard=ROLLUP,
                          tags=("gen",)), alias="gen $tag_gen"),
        ], unit=units.OpsPerSecond, description="Collections per second, by generation collected."),
        panel(timeseries.Panel(), "Heap size and live data (peaks)", [
            target("A", q('max("size_max_bytes") AS "size", max("live_max_bytes") AS "live"', "heap",
                          tags=("app",)), alias="$tag_app $col"),
        ], unit=BYTES, description="Largest heap size and live data posted in each interval (the "
                                   "maximum of maxima: the same on every policy)."),
        panel(timeseries.Panel(), "Allocation rate", [
            target("A", q('sum("allocated_bytes") * 1000 / $__interval_ms AS "alloc"', "heap",
                          tags=("app",)), alias="$tag_app"),
        ], unit=units.BytesPerSecondSI, description="Bytes allocated per second: the sum over the interval "
                                                    "divided by its length (exact on every policy)."),
        panel(stacked(timeseries.Panel()), "Capability utilisation", [
            target("A", q(", ".join(f'sum("{part}_ns") / ({CAP_TOTAL}) AS "{part}"'
                                    for part in ("mutator", "gc", "idle")), "capability"), alias="$col"),
        ], unit=units.PercentUnit,
            description="Share of the capabilities' time spent running Haskell code, in GC and idle."),
        panel(horizontal_bars("sum"), "Busiest thread labels", [
            target("A", q('sum("runtime_ns") AS "runtime"', "threads", group="", tags=("label",)),
                   alias="$tag_label"),
        ], unit=NS, min_interval=False,
            description="Run time per thread label over the range (the top labels per window; the "
                        "rest are summed as other)."),
        panel(table.Panel().show_header(True), "Active sessions", [
            table_target("A", q('sum("mutator_ns") AS "mutator_ns", sum("gc_ns") AS "gc_ns"', "capability",
                                group="", tags=("app", "host", "session"))),
        ], width=24, height=6, min_interval=False,
            description="Sessions with capability activity in the range, with their time running "
                        "Haskell code and in GC over the range."),
    ]
    return build("liveprof-overview", "liveprof / Overview", panels, rp_vars() + common_vars(),
                 annotations=[markers()])


# -- GC -------------------------------------------------------------------------------------------

def gc() -> model.Dashboard:
    panels: list[PanelBuilder] = [
        panel(timeseries.Panel().draw_style(common.GraphDrawStyle.POINTS).point_size(4), "Collections", [
            target("A", q('"pause_ns" AS "pause"', "gc", guard=RAW, group="", tags=("gen",),
                          tail="ORDER BY time DESC LIMIT 5000"), alias="gen $tag_gen"),
            target("B", q('max("pause_ns_max") AS "pause"', "gc", guard=ROLLUP, tags=("gen",)),
                   alias="gen $tag_gen"),
        ], unit=NS, width=24,
            description="On raw points each collection (the latest 5000 per generation); on rollups "
                        "the longest collection of each interval."),
        panel(histogram.Panel().bucket_count(30)
              # Grafana's own defaults, which the SDK's would change (legend hidden, sorted tooltip)
              .legend(common_b.VizLegendOptions().show_legend(True)
                      .display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM))
              .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE)
                       .sort(common.SortOrder.NONE)),
              "Pause distribution", [
            target("A", q('"pause_ns" AS "pause"', "gc", guard=RAW, group="",
                          tail="ORDER BY time DESC LIMIT 20000")),
            target("B", q('"pause_ns_max" AS "pause"', "gc", guard=ROLLUP, group="")),
        ], unit=NS, description="Raw: every collection's pause (latest 20000). Rollups: the longest pause "
                                "of each rollup interval."),
        panel(stacked(timeseries.Panel()), "Copied bytes", [
            target("A", q('sum("copied_bytes") AS "copied"', "gc", tags=("gen",)), alias="gen $tag_gen"),
        ], unit=BYTES),
        panel(timeseries.Panel(), "Parallel GC work balance", [
            target("A", q('sum("par_balanced_copied_bytes") / sum("par_tot_copied_bytes") AS "balance"', "gc",
                          tags=("app",)), alias="$tag_app"),
        ], unit=units.PercentUnit,
            description="Balanced copied bytes over all copied bytes in the interval (0: one GC thread "
                        "did all the copying, 1: evenly spread; 0 for a single-threaded GC)."),
        panel(timeseries.Panel(), "Collections and time in sync", [
            target("A", q('count("pause_ns") AS "collections", sum("sync_ns") AS "sync"', "gc",
                          guard=RAW, tags=("kind",)), alias="$tag_kind $col"),
            target("B", q('sum("pause_ns_count") AS "collections", sum("sync_ns") AS "sync"', "gc",
                          guard=ROLLUP, tags=("kind",)), alias="$tag_kind $col"),
        ], description="Collections per interval by kind (major/minor), and the time spent bringing "
                       "the capabilities to a stop (threaded RTS only)."),
        panel(timeseries.Panel(), "Concurrent (non-moving) GC phases", [
            target("A", q('sum("duration_ns") AS "total", max("duration_ns") AS "longest"', "nonmoving",
                          guard=RAW, tags=("phase",)), alias="$tag_phase $col"),
            target("B", q('sum("duration_ns") AS "total", max("duration_ns_max") AS "longest"', "nonmoving",
                          guard=ROLLUP, tags=("phase",)), alias="$tag_phase $col"),
        ], unit=NS, width=24, description="Mark, sync and sweep phases of the non-moving collector: "
                                          "time per interval and the longest phase."),
    ]
    return build("liveprof-gc", "liveprof / GC", panels, rp_vars() + common_vars(), annotations=[markers()])


# -- Threads & spans --------------------------------------------------------------------------

BLOCK_REASONS = ("mvar", "mvar_read", "black_hole", "stm", "delay", "read", "write", "do_proc",
                 "ccall", "ccall_interruptible", "throw_to", "other")


def threads() -> model.Dashboard:
    panels: list[PanelBuilder] = [
        panel(stacked(timeseries.Panel()), "Run time by thread label", [
            target("A", q('sum("runtime_ns") AS "runtime"', "threads", tags=("label",)), alias="$tag_label"),
        ], unit=NS),
        panel(stacked(timeseries.Panel()), "Time in spans by label", [
            target("A", q('sum("time_ns") AS "time"', "spans", tags=("label",)), alias="$tag_label"),
        ], unit=NS, description="ghc-events-analyze spans (START/STOP user messages)."),
        panel(table.Panel().show_header(True), "Span totals (ghc-events-analyze)", [
            table_target("A", q('sum("time_ns") AS "time_ns", sum("starts") AS "starts", '
                                'sum("stops") AS "stops"', "spans", group="", tags=("label",))),
        ]),
        panel(table.Panel().show_header(True), "Thread totals by label", [
            table_target("A", q('sum("runtime_ns") AS "runtime_ns", sum("runs") AS "runs"', "threads",
                                group="", tags=("label",))),
        ]),
        panel(timeseries.Panel(), "Threads created, finished and blocked", [
            target("A", q('sum("created") AS "created", sum("finished") AS "finished", '
                          'sum("blocked") AS "blocked"', "threads"), alias="$col"),
        ]),
        panel(stacked(timeseries.Panel()), "Blocked by reason", [
            target("A", q(", ".join(f'sum("blocked_{r}") AS "{r}"' for r in BLOCK_REASONS), "threads"),
                   alias="$col"),
        ]),
    ]
    return build("liveprof-threads", "liveprof / Threads & spans", panels, rp_vars() + common_vars(),
                 annotations=[markers()])


# -- Heap profile -------------------------------------------------------------------------------

def heap_profile() -> model.Dashboard:
    where = '"session" =~ /^$session$/ AND "mode" =~ /^$mode$/ AND $timeFilter'
    panels: list[PanelBuilder] = [
        panel(stacked(timeseries.Panel()), "Residency by label", [
            target("A", q('mean("residency_bytes") AS "residency"', "heap_profile", where=where, guard=RAW,
                          tags=("label",)), alias="$tag_label"),
            target("B", q('sum("residency_bytes_sum") / sum("residency_bytes_count") AS "residency"',
                          "heap_profile", where=where, guard=ROLLUP, tags=("label",)), alias="$tag_label"),
        ], unit=BYTES, width=24, height=10,
            description="Mean residency per label over the censuses of each interval, for the chosen "
                        "session and breakdown (top labels per census; the rest summed as other)."),
        panel(horizontal_bars("max"), "Peak residency by label", [
            target("A", q('max("residency_bytes") AS "peak"', "heap_profile", where=where, guard=RAW,
                          group="", tags=("label",)), alias="$tag_label"),
            target("B", q('max("residency_bytes_max") AS "peak"', "heap_profile", where=where, guard=ROLLUP,
                          group="", tags=("label",)), alias="$tag_label"),
        ], unit=BYTES, width=24),
    ]
    variables = rp_vars() + common_vars(session_from="heap_profile", session_multi=False) + [
        query_var("mode", 'SHOW TAG VALUES FROM "heap_profile" WITH KEY = "mode" '
                          'WHERE "session" =~ /^$session$/', label="Breakdown", multi=False),
    ]
    return build("liveprof-heap-profile", "liveprof / Heap profile", panels, variables,
                 annotations=[markers()])


# -- Sessions ------------------------------------------------------------------------------------

def sessions() -> model.Dashboard:
    by_session = ("app", "host", "session")
    panels: list[PanelBuilder] = [
        panel(table.Panel().show_header(True).transformations([
            model.DataTransformerConfig(id_val="joinByField",
                                        options={"byField": "session", "mode": "outer"}),
            model.DataTransformerConfig(id_val="organize", options={
                "renameByName": {"Time 1": "start", "Time 2": "end (last window)"},
                "excludeByName": {"seen_last": True, "app 2": True, "host 2": True}}),
        ]), "Sessions", [
            table_target("A", q('last("program") AS "program", last("args") AS "args", last("rts") AS "rts", '
                                'last("pid") AS "pid", last("caps") AS "caps"', "session", group="",
                                tags=by_session)),
            table_target("B", q('last("mutator_ns") AS "seen_last"', "capability", group="",
                                tags=by_session)),
        ], width=24, height=16, min_interval=False,
            description="One row per session that started in the range: program, arguments, RTS, "
                        "start (the RTS start) and end (the start of its last capability window)."),
    ]
    return build("liveprof-sessions", "liveprof / Sessions", panels, rp_vars() + common_vars(),
                 time_from="now-7d")


DASHBOARDS = {
    "overview.json": overview,
    "gc.json": gc,
    "threads-spans.json": threads,
    "heap-profile.json": heap_profile,
    "sessions.json": sessions,
}


def render() -> dict[str, str]:
    return {name: json.dumps(make(), cls=JSONEncoder, indent=2) + "\n" for name, make in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
