"""Subcommands of ``liveprof``, one module each."""

from . import derive, dump, importer, influx, monitor, serve

COMMANDS = [dump, derive, monitor, serve, importer, influx]
