"""Subcommands of ``liveprof``, one module each."""

from . import derive, dump

COMMANDS = [dump, derive]
