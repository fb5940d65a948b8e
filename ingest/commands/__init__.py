"""Subcommands of ``liveprof``, one module each."""

from . import derive, dump, influx, monitor, serve

COMMANDS = [dump, derive, monitor, serve, influx]
