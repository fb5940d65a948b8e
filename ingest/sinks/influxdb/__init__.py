"""The InfluxDB 1.x sink, by job:

- ``config``: ``InfluxSinkConfig`` (sections ``batch``, ``buffer``, ``retry``)
  and the ``SinkStats`` counters;
- ``client``: the HTTP ``/ping``, ``/write`` and ``/query`` client and the
  parsing of its answers (the edge: no aiohttp error leaves it);
- ``influxql``: identifier and string quoting, the only one;
- ``retry``: what a status means (``classify``), ``Retry-After``;
- ``ledger``: queued and settled lines, flush waiters, drops per session;
- ``buffer``: memory buffer and spill to the spool (``ingest.sinks.spool``);
- ``delivery``: batches, requests in flight, retries;
- ``sink``: ``InfluxSink`` (lifecycle, submit, flush, the ``PointStore`` calls).
"""

from ingest.sinks.influxdb.client import InfluxClient, Series, check_credentials
from ingest.sinks.influxdb.config import BatchConfig, BufferConfig, InfluxSinkConfig, RetryConfig, SinkStats
from ingest.sinks.influxdb.influxql import quote_ident, quote_string, tags_match
from ingest.sinks.influxdb.sink import InfluxSink

__all__ = [
    "BatchConfig",
    "BufferConfig",
    "InfluxClient",
    "InfluxSink",
    "InfluxSinkConfig",
    "RetryConfig",
    "Series",
    "SinkStats",
    "check_credentials",
    "quote_ident",
    "quote_string",
    "tags_match",
]
