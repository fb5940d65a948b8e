"""``/metrics``: the service's figures in the Prometheus text format (0.0.4).

Labels are bounded: the source kind (``monitor_tcp``, ``http_upload``, ...),
sink counter names, the API's route templates and statuses; never a session,
peer or app.  Stream totals are counters: finished streams are added once
into per-kind totals (``StreamTotals``), live ones on top, so a total never
goes down when the registry forgets an old stream.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from aiohttp import web

from ingest.facade import ALERT_KINDS, ServiceFacade

from .routing import api
from .state import COUNTERS, GUARD, SERVICE, UPLOADS

if TYPE_CHECKING:
    from ingest.facade import StreamRecord

_FIELDS = ("bytes", "events", "points")


class StreamTotals:
    """Per source kind: finished streams' figures, each counted once."""

    def __init__(self):
        self.done: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.counted: set[int] = set()

    def update(self, records: list[StreamRecord]) -> tuple[dict, dict]:
        """Returns (totals by kind including live streams, live streams by kind)."""
        finished = {rec.key: rec for rec in records if not rec.live}
        for key, rec in finished.items():
            if key not in self.counted:
                d = self.done[rec.info.source]
                for f in _FIELDS:
                    d[f] += getattr(rec, f)
                d["streams"] += 1
                d["errors"] += rec.error is not None
                self.counted.add(key)
        self.counted &= finished.keys()   # forgotten streams never come back
        totals = {k: dict(v) for k, v in self.done.items()}
        live: dict[str, int] = defaultdict(int)
        for rec in records:
            if rec.live:
                d = totals.setdefault(rec.info.source, {})
                for f in _FIELDS:
                    d[f] = d.get(f, 0) + getattr(rec, f)
                d["streams"] = d.get("streams", 0) + 1
                d["errors"] = d.get("errors", 0) + (rec.error is not None)
                live[rec.info.source] += 1
        return totals, live


def _esc(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exposition:
    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples) -> None:
        """``samples``: [(labels dict, value)]; a family with none is left out."""
        samples = list(samples)
        if not samples:
            return
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lab}}} {float(value):g}" if lab
                              else f"{name} {float(value):g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(service: ServiceFacade, totals: StreamTotals, counters, uploads, guard=None) -> str:
    out = Exposition()
    by_kind, live = totals.update(service.stream_records())
    out.family("liveprof_up", "gauge", "the service answers", [({}, 1)])
    for f, help_ in (("bytes", "eventlog bytes received"), ("events", "events decoded"),
                     ("points", "points derived"), ("streams", "streams opened"),
                     ("errors", "streams ended by an error")):
        name = f"liveprof_stream_{f}_total" if f != "errors" else "liveprof_stream_errors_total"
        out.family(name, "counter", f"{help_}, by source kind",
                   [({"source": k}, v.get(f, 0)) for k, v in sorted(by_kind.items())])
    out.family("liveprof_streams_live", "gauge", "streams open now, by source kind",
               [({"source": k}, n) for k, n in sorted(live.items())])
    out.family("liveprof_sources_running", "gauge", "source tasks running, by kind",
               [({"source": k}, n) for k, n in sorted(service.source_kinds_running().items())])

    s = service.sink_stats()
    if s is not None:
        out.family("liveprof_sink_lines_total", "counter",
                   "InfluxDB sink lines: submitted, written",
                   [({"state": "submitted"}, s.submitted), ({"state": "written"}, s.written)])
        dropped = [("4xx", s.dropped_4xx), ("overflow", s.dropped_overflow),
                   ("retries", s.dropped_retries), ("shutdown", s.dropped_shutdown)]
        out.family("liveprof_sink_dropped_lines_total", "counter",
                   "lines the InfluxDB sink dropped, by reason",
                   [({"reason": r}, v) for r, v in dropped])
        out.family("liveprof_sink_requests_total", "counter", "/write requests sent",
                   [({}, s.requests)])
        out.family("liveprof_sink_retries_total", "counter", "/write requests retried",
                   [({}, s.retried)])
        out.family("liveprof_sink_batches_total", "counter", "batches delivered",
                   [({}, s.batches)])
        out.family("liveprof_sink_buffered_lines", "gauge", "lines in the memory buffer",
                   [({}, s.buffered)])
        out.family("liveprof_sink_buffered_bytes", "gauge", "bytes in the memory buffer",
                   [({}, s.buffered_bytes)])
        out.family("liveprof_sink_spooled_lines", "gauge", "lines waiting in the disk spool",
                   [({}, s.spooled)])
        out.family("liveprof_sink_spooled_bytes", "gauge", "bytes waiting in the disk spool",
                   [({}, s.spooled_bytes)])
        out.family("liveprof_sink_spilled_late_lines_total", "counter",
                   "lines moved to the disk spool for having waited spill_after in memory "
                   "or in retries (a crash then loses at most that long)",
                   [({}, s.spilled_late)])
        out.family("liveprof_sink_in_flight_lines", "gauge", "lines in requests under way",
                   [({}, s.in_flight_lines)])
        lag = s.submitted - s.written - sum(v for _, v in dropped)
        out.family("liveprof_sink_lag_lines", "gauge",
                   "lines submitted and not yet stored or dropped (buffer, spool, in flight)",
                   [({}, max(0, lag))])
    a = service.alert_stats()
    if a is not None:
        out.family("liveprof_alerts_total", "counter", "MQTT alerts, by state",
                   [({"state": "queued"}, a.alerts), ({"state": "published"}, a.published)])
        out.family("liveprof_alerts_dropped_total", "counter", "alerts dropped, by reason",
                   [({"reason": "full"}, a.dropped_full),
                    ({"reason": "shutdown"}, a.dropped_shutdown)])
        out.family("liveprof_alerts_failed_total", "counter",
                   "alerts given up: the client refused them, or the connection ended at "
                   "each attempt to publish them", [({}, a.failed)])
        by_kind = dict.fromkeys(ALERT_KINDS, 0)
        by_kind.update(a.failed_by_alert)  # kinds are ours (the sink's payloads): bounded
        out.family("liveprof_alerts_failed_by_alert_total", "counter",
                   "alerts given up, by alert kind",
                   [({"alert": k}, n) for k, n in sorted(by_kind.items())])
        out.family("liveprof_alerts_publish_errors_total", "counter",
                   "publish attempts that failed (refused, or no PUBACK)",
                   [({}, a.publish_errors)])
        out.family("liveprof_alerts_publisher_restarts_total", "counter",
                   "times the alert publisher died and was started again",
                   [({}, a.publisher_restarts)])
        out.family("liveprof_alerts_pending", "gauge", "alerts waiting", [({}, a.queued)])
        out.family("liveprof_alerts_connected", "gauge", "1 while connected to the broker",
                   [({}, int(a.connected))])

    out.family("liveprof_http_requests_total", "counter",
               "API requests, by method, route template and status",
               [({"method": m, "route": r, "status": str(st)}, n)
                for (m, r, st), n in sorted(counters.requests.items())])
    out.family("liveprof_uploads_total", "counter", "uploads ended, by outcome",
               [({"outcome": o}, n) for o, n in sorted(counters.uploads.items())])
    out.family("liveprof_upload_bytes_total", "counter", "upload body bytes received",
               [({}, counters.upload_bytes)])
    out.family("liveprof_http_refused_total", "counter", "requests refused by a limit",
               [({"reason": r}, n) for r, n in sorted(counters.refused.items())])
    out.family("liveprof_uploads_receiving", "gauge", "upload bodies being received",
               [({}, uploads.receiving)])
    out.family("liveprof_uploads_open", "gauge", "resumable uploads open (held in memory)",
               [({}, len(uploads.open))])
    if guard is not None:
        out.family("liveprof_http_connections", "gauge", "API connections open",
                   [({}, len(guard.conns))])
        out.family("liveprof_http_connections_closed_total", "counter",
                   "API connections closed by the connection cap: evicted (idle or "
                   "half-sent, for a new one) or refused (every one inside a request)",
                   [({"reason": "evicted"}, guard.evicted), ({"reason": "refused"}, guard.refused)])
    return out.text()


TOTALS = web.AppKey("stream_totals", StreamTotals)


@api("GET", "/metrics", scope="read", all_apps=True)
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    text = render(app[SERVICE], app[TOTALS], app[COUNTERS], app[UPLOADS], app.get(GUARD))
    return web.Response(body=text.encode(), headers={
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store"})
