"""liveprof's HTTP API (docs/api.md): uploads, sessions, connections, tokens,
health and Prometheus metrics, in the service's process."""

from .app import bound_port, build_app, start_api, stop_api
from .config import ApiConfig

__all__ = ["ApiConfig", "bound_port", "build_app", "start_api", "stop_api"]
