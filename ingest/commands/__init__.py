"""Subcommands of ``liveprof``, one module each."""

from . import derive, dump, monitor

COMMANDS = [dump, derive, monitor]
