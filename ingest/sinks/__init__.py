"""Sinks: where derived points go.  ``InfluxSink`` writes InfluxDB 1.x
(``ingest.sinks.influxdb``); the contracts are in ``ingest.sinks.base``."""

from ingest.sinks.errors import InfluxQueryError, SinkAuthError, SinkError
from ingest.sinks.influxdb import (
    BatchConfig,
    BufferConfig,
    InfluxClient,
    InfluxSink,
    InfluxSinkConfig,
    RetryConfig,
    Series,
    SinkStats,
    quote_ident,
    quote_string,
)
from ingest.sinks.spool import Spool

__all__ = [
    "BatchConfig",
    "BufferConfig",
    "InfluxClient",
    "InfluxQueryError",
    "InfluxSink",
    "InfluxSinkConfig",
    "RetryConfig",
    "Series",
    "SinkAuthError",
    "SinkError",
    "SinkStats",
    "Spool",
    "quote_ident",
    "quote_string",
]
