"""The service with its API in a process of its own, for tests that measure
it: ``python -m tests.api.serve_main INFLUX_URL DATABASE STATE_DIR ADMIN_TOKEN [API_JSON]``
(``API_JSON``: settings of the ``api`` section to override).  Logs to stderr
as ``liveprof serve`` does; prints ``PORT <n>`` once serving; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from ingest.api import ApiConfig, bound_port, start_api, stop_api
from ingest.config import load
from ingest.service import Service


async def main(url: str, database: str, state_dir: str, admin: str, api: str = "{}") -> None:
    settings = load(None, {"influx.url": url, "influx.database": database,
                           "state_dir": state_dir, "setup": False,
                           "influx.memory_max_bytes": 8 << 20})
    service = Service(settings)
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    runner = await start_api(service, ApiConfig(**{"port": 0, "admin_token": admin,
                                                   **json.loads(api)}))
    print(f"PORT {bound_port(runner)}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await stop_api(runner)
    service.stop()
    await task


if __name__ == "__main__":
    logging.basicConfig(level="INFO", stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(*sys.argv[1:6]))
