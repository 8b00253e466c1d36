"""Running the HTTP API: ``serve`` is what ``culm serve`` calls.

With no API keys configured anyone who can reach the port could run agents as the single
``default`` tenant, so the server then listens on loopback only and says why otherwise.

``server_config`` is where the connection limits (``culm.api.connections``) meet uvicorn:
it raises the process's open-file limit, fits ``max_connections`` under it, and builds
uvicorn's config with the guarded protocol and the idle keep-alive timeout.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from fastapi import FastAPI

from culm.agent.app import App
from culm.api.app import create_app
from culm.api.connections import (
    ConnectionLimits,
    fit_connections,
    guarded_protocol,
    raise_open_file_limit,
)
from culm.config import Settings
from culm.errors import InvalidInput

__all__ = [
    "Server",
    "StartupFailed",
    "check_bind",
    "create_app",
    "is_loopback",
    "serve",
    "server_config",
]

log = logging.getLogger("culm.server")

SHUTDOWN_GRACE = 3
"""Seconds requests still in progress (waits, say) get to finish at shutdown."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings) -> None:
    """Raise ``InvalidInput`` when listening on ``host`` would expose an unauthenticated API."""
    if settings.api_keys or is_loopback(host):
        return
    raise InvalidInput(
        f"refusing to listen on {host}: no API keys are configured, so anyone who can reach "
        "the server could run agents. Configure keys (CULM_API_KEYS=key=tenant,...) or "
        "listen on 127.0.0.1."
    )


def serve(
    app: App,
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = False,
    extend: Callable[[FastAPI], None] | None = None,
) -> None:
    """Serve ``app``'s agents over HTTP until interrupted (Ctrl-C or SIGTERM).

    Runs still going at shutdown are interrupted, each with its terminal event. The access
    log is off by default: at thousands of requests per second it costs more than the rest.
    ``extend`` is called with the ASGI app once uvicorn is configured (``culm serve`` adds
    its logs there). Raises ``StartupFailed`` when the server could not start.
    """
    check_bind(host, settings)
    api = create_app(app, settings)
    config = server_config(
        api, settings, host=host, port=port, log_level=log_level, access_log=access_log
    )
    if extend is not None:
        extend(api)
    Server(config, api).run()


def server_config(api: FastAPI, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's config for ``api`` with culm's connection limits; ``options`` are passed
    on to ``uvicorn.Config`` (host, port, log level...). Raises this process's open-file
    limit as far as it may go, and fits ``max_connections`` under it."""
    limits = ConnectionLimits(
        max_connections=fit_connections(settings.max_connections, raise_open_file_limit()),
        max_header_bytes=settings.max_header_bytes,
        max_url_bytes=settings.max_url_bytes,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        send_timeout=settings.send_timeout_seconds,
    )
    options.setdefault("timeout_graceful_shutdown", SHUTDOWN_GRACE)
    return uvicorn.Config(
        api,
        http=guarded_protocol(limits),
        # uvicorn types it as int but uses it as a delay: fractions work
        timeout_keep_alive=settings.keepalive_seconds,  # type: ignore[arg-type]
        # the same head limit, should the h11 protocol ever be chosen instead
        h11_max_incomplete_event_size=settings.max_header_bytes,
        **options,
    )


class StartupFailed(Exception):
    """The server did not start: ``cause`` says why (the engine could not be opened: an
    unreachable database, a missing driver, a failed migration...), None when uvicorn
    already said it."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(f"the server did not start: {cause!r}" if cause else "not started")
        self.cause = cause


class Server(uvicorn.Server):
    """uvicorn's server, which enters the app's lifespan itself and ends the open event
    streams as soon as it starts shutting down.

    uvicorn would log a lifespan that fails as a traceback and then return as if all went
    well; here the failure is kept (``failure``) for the caller to report, and nothing is
    served. The event streams would otherwise hold the shutdown for the whole grace period
    and then be cut; their clients see a clean end and resume by cursor once a server is
    back.
    """

    def __init__(self, config: uvicorn.Config, api: FastAPI) -> None:
        config.lifespan = "off"  # entered in ``startup`` below
        super().__init__(config)
        self._api = api
        self._lifespan: AbstractAsyncContextManager[Any] | None = None
        self.failure: BaseException | None = None
        """Why the app could not start, if it could not."""

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until shut down; ``StartupFailed`` when the server never started."""
        super().run(sockets)
        if not self.started:
            raise StartupFailed(self.failure)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        lifespan = self._api.router.lifespan_context(self._api)
        try:
            state = await lifespan.__aenter__()
        except Exception as exc:
            self.failure = exc
            self.should_exit = True
            return
        self._lifespan = lifespan
        if state:
            self.lifespan.state.update(state)
        try:
            await super().startup(sockets)
        except BaseException:  # SystemExit when uvicorn cannot bind
            await self._exit_lifespan()
            raise
        # what exists once the server has started (modules, routes, models, the engine)
        # lives as long as the process: frozen, the collector stops walking its hundred
        # thousand objects at every full collection, which took ~100 ms each and came
        # round every few hundred runs
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._api.state.shutdown.trigger()
        await super().shutdown(sockets)
        if not self.force_exit:  # a second Ctrl-C: leave at once, as uvicorn does
            await self._exit_lifespan()

    async def _exit_lifespan(self) -> None:
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is None:
            return
        try:
            await lifespan.__aexit__(None, None, None)
        except Exception:
            log.exception("the application did not shut down cleanly")
