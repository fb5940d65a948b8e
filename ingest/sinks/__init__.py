"""Sinks: where derived points go.  ``InfluxSink`` writes InfluxDB 1.x."""

from ingest.sinks.errors import InfluxQueryError, SinkAuthError, SinkError
from ingest.sinks.influx import InfluxSink, InfluxSinkConfig, SinkStats
from ingest.sinks.influx_api import InfluxClient, Series
from ingest.sinks.spool import Spool

__all__ = [
    "InfluxClient",
    "InfluxQueryError",
    "InfluxSink",
    "InfluxSinkConfig",
    "Series",
    "SinkAuthError",
    "SinkError",
    "SinkStats",
    "Spool",
]
