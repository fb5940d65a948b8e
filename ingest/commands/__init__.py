"""Subcommands of ``liveprof``, one module each."""

from . import dump

COMMANDS = [dump]
