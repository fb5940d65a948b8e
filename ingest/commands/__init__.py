"""Subcommands of ``liveprof``, one module each, imported only when used: a
command's start-up does not pay for the others' imports (aiohttp's server,
the monitor protocol, ...)."""

from importlib import import_module
from types import ModuleType

# command name -> module of this package, in the order ``--help`` lists them
MODULES = {"dump": "dump", "derive": "derive", "monitor": "monitor", "serve": "serve",
           "import": "importer", "upload": "upload", "influx": "influx", "agent": "agent"}


def load(name: str) -> ModuleType:
    """The module of command ``name`` (a key of ``MODULES``)."""
    return import_module(f".{MODULES[name]}", __name__)
