"""Only for the optional C extensions; all metadata is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("protocol.eventlog._speedups", ["protocol/eventlog/_speedups.c"],
                             optional=True),
                   Extension("protocol.monitor._speedups", ["protocol/monitor/_speedups.c"],
                             optional=True),
                   Extension("ingest.agent._sendmmsg", ["ingest/agent/_sendmmsg.c"], optional=True),
                   Extension("ingest.derive._core", ["ingest/derive/_core.c"], optional=True)])
