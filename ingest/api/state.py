"""What the handlers share, reached through typed ``AppKey``s."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from ingest.facade import ServiceFacade

from .auth import Token, TokenStore
from .config import ApiConfig

if TYPE_CHECKING:
    from .connections import ConnectionStore
    from .guard import ConnectionGuard
    from .upload import Uploads


@dataclass
class ApiCounters:
    """The API's own figures, for /metrics (labels: route templates and statuses)."""

    requests: Counter = field(default_factory=Counter)     # (method, route, status) -> n
    uploads: Counter = field(default_factory=Counter)      # outcome -> n
    upload_bytes: int = 0
    refused: Counter = field(default_factory=Counter)      # reason -> n


SERVICE: web.AppKey[ServiceFacade] = web.AppKey("service")
CONFIG = web.AppKey("config", ApiConfig)
TOKENS = web.AppKey("tokens", TokenStore)
CONNECTIONS: web.AppKey[ConnectionStore] = web.AppKey("connections")
UPLOADS: web.AppKey[Uploads] = web.AppKey("uploads")
COUNTERS = web.AppKey("counters", ApiCounters)
GUARD: web.AppKey[ConnectionGuard] = web.AppKey("guard")

# the authenticated token of a request
TOKEN: web.RequestKey[Token] | str
try:
    TOKEN = web.RequestKey("token", Token)   # aiohttp >= 3.12
except AttributeError:  # pragma: no cover
    TOKEN = "liveprof.token"
