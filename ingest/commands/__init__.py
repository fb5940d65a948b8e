"""Subcommands of ``liveprof``, one module each."""

from . import derive, dump, influx, monitor

COMMANDS = [dump, derive, monitor, influx]
