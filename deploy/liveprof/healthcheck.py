#!/usr/bin/env python3
"""Container health check of ``liveprof serve`` (Dockerfile, docker-compose.yml).

Healthy when the service is up and listening for monitor datagrams: a UDP
socket is bound to ``LIVEPROF_MONITOR_UDP_PORT`` (default 8242) in this
network namespace (``/proc/net/udp``, ``/proc/net/udp6``).  With
``HEALTHCHECK_URL`` set (the HTTP API), that URL must also
answer 2xx.  Exit status 0 healthy, 1 not, with the reason on stderr.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def udp_bound(port: int, tables=("/proc/net/udp", "/proc/net/udp6")) -> bool:
    for table in tables:
        try:
            with open(table) as f:
                next(f, None)  # header
                for line in f:
                    local = line.split()[1]  # ADDRESS:PORT in hex
                    if int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False


def main() -> int:
    port = int(os.environ.get("LIVEPROF_MONITOR_UDP_PORT") or 8242)
    if not udp_bound(port):
        print(f"unhealthy: nothing bound to UDP port {port}", file=sys.stderr)
        return 1
    url = os.environ.get("HEALTHCHECK_URL")
    if url:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if not 200 <= resp.status < 300:
                    print(f"unhealthy: {url} answered {resp.status}", file=sys.stderr)
                    return 1
        except OSError as exc:
            print(f"unhealthy: {url}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
