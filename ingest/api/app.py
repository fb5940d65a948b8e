"""The aiohttp application and its lifecycle inside the service.

``start_api(service, config)`` builds the app, runs it on an ``AppRunner``
with a ``TCPSite`` (not ``run_app``: the service owns the loop and the
shutdown) and returns the runner; ``stop_api(runner)`` stops listening,
lets requests in progress finish (``shutdown_timeout``), ends open uploads
and stops the connections' sources.

Connections go through a ``ConnectionGuard`` (``guard.py``: a cap that
closes idle and half-sent connections first), headers must come within
``header_timeout`` (aiohttp's keepalive timeout, which also closes a
connection that never completes a request), aiohttp's own gzip inflating is
off (``body.py`` inflates upload bodies within bounds), and the loggers
clients can make talk are rate-limited while the API runs (``logs.py``).

One middleware applies each route's rules (``routing.api``): bearer token
(401), scope (403), app-limited tokens kept off all-app resources (403), the
request timeout (504; uploads have their own idle timeout), and counts the
request for /metrics by route template and status.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from ingest.facade import ServiceFacade

from . import connections, health, logs, metrics, openapi, sessions, tokens, upload_routes  # noqa: F401
from .auth import TokenStore, authenticate, problem, require_scope, require_unrestricted
from .config import ApiConfig
from .connections import ConnectionStore
from .guard import ConnectionGuard, GuardedSite, connection_cap
from .routing import ROUTES, route_of
from .state import (
    CONFIG,
    CONNECTIONS,
    COUNTERS,
    GUARD,
    SERVICE,
    TOKEN,
    TOKENS,
    UPLOADS,
    ApiCounters,
)
from .upload import Uploads

log = logging.getLogger("liveprof.api")


def _guard(store: TokenStore, config: ApiConfig, counters: ApiCounters,
           conns: ConnectionGuard):
    @web.middleware
    async def guard(request: web.Request, handler):
        with conns.busy(request.protocol):
            return await _checked(request, handler)

    async def _checked(request: web.Request, handler):
        route = route_of(request)
        label = route.path if route is not None else "unmatched"
        status = 500
        try:
            if route is not None and route.scope is not None:
                token = authenticate(store, request)
                if route.scope != "any":
                    require_scope(token, route.scope)
                if route.all_apps:
                    require_unrestricted(token)
                request[TOKEN] = token
            if route is not None and route.timeout:
                try:
                    async with asyncio.timeout(config.request_timeout):
                        response = await handler(request)
                except TimeoutError:
                    raise problem(504, f"request took over {config.request_timeout:g} s") \
                        from None
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            counters.requests[(request.method, label, status)] += 1
    return guard


def build_app(service: ServiceFacade, config: ApiConfig,
              state_dir: Path | None = None) -> web.Application:
    state_dir = Path(state_dir if state_dir is not None else service.state_dir)
    token_path, conn_path = config.paths(state_dir)
    store = TokenStore(token_path)
    store.load()
    if store.created:
        if config.admin_token is not None:
            store.add_admin(config.admin_token.get_secret_value())
            log.info("token store %s created with the configured admin token", token_path)
        else:
            log.warning("no token store and no admin token (LIVEPROF_ADMIN_TOKEN): "
                        "every API request but health will be refused")
    counters = ApiCounters()
    conn_guard = ConnectionGuard(connection_cap(config.max_connections))
    app = web.Application(middlewares=[_guard(store, config, counters, conn_guard)])
    app[GUARD] = conn_guard
    app[SERVICE] = service
    app[CONFIG] = config
    app[TOKENS] = store
    app[COUNTERS] = counters
    app[metrics.TOTALS] = metrics.StreamTotals()
    uploads = Uploads(service, config, counters)
    app[UPLOADS] = uploads
    conns = ConnectionStore(service, conn_path)
    conns.load()
    app[CONNECTIONS] = conns
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)

    async def lifecycle(app: web.Application):
        uploads.start()
        conns.start_all()
        try:
            yield
        finally:
            await uploads.close()
            await conns.stop_all()

    app.cleanup_ctx.append(lifecycle)
    return app


class ApiRunner(web.AppRunner):
    """An ``AppRunner`` that remembers the log filter it installed."""

    liveprof_log_filter: list[logs.LimitFilter] | None = None


async def start_api(service: ServiceFacade, config: ApiConfig, *, state_dir: Path | None = None
                    ) -> web.AppRunner:
    """Serve the API for ``service`` on ``config.host:config.port``."""
    app = build_app(service, config, state_dir)
    runner = ApiRunner(app, shutdown_timeout=config.shutdown_timeout,
                           handler_cancellation=True, auto_decompress=False,
                           keepalive_timeout=config.header_timeout)
    await runner.setup()
    limiter = logs.install()
    try:
        site = GuardedSite(runner, config.host, config.port, app[GUARD])
        await site.start()
    except BaseException:
        logs.remove(limiter)
        await runner.cleanup()
        raise
    runner.liveprof_log_filter = limiter
    log.info("HTTP API on %s", ", ".join(f"http://{h}:{p}" for h, p, *_ in runner.addresses))
    return runner


async def stop_api(runner: web.AppRunner) -> None:
    try:
        await runner.cleanup()
    finally:
        limiter = getattr(runner, "liveprof_log_filter", None)
        if limiter is not None:
            logs.remove(limiter)


def bound_port(runner: web.AppRunner) -> int:
    """The port the runner's first site listens on (config.port 0: chosen by the OS)."""
    return runner.addresses[0][1]
