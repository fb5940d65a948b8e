"""liveprof's HTTP API (docs/api.md): uploads, sessions, connections, tokens,
health and Prometheus metrics, in the service's process.

The server side (``app``, aiohttp's web) is imported when first used, so the
settings (``ApiConfig``) load without it: commands that run no API start faster."""

from typing import Any

from .config import ApiConfig

__all__ = ["ApiConfig", "bound_port", "build_app", "start_api", "stop_api"]


def __getattr__(name: str) -> Any:
    if name in ("bound_port", "build_app", "start_api", "stop_api"):
        from . import app
        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
