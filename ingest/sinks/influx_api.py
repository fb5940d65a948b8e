"""Moved to ``ingest.sinks.influxdb``; kept only for ``ingest/api/sessions.py``
until the API deletes sessions through ``PointStore.delete_series``: delete
this module then."""

from ingest.sinks.influxdb.influxql import quote_ident, quote_string

__all__ = ["quote_ident", "quote_string"]
