"""Subcommands of ``liveprof``, one module each."""

from . import agent, derive, dump, importer, influx, monitor, serve, upload

COMMANDS = [dump, derive, monitor, serve, importer, upload, influx, agent]
