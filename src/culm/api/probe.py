"""What a ``culm worker`` serves over HTTP when asked (``--metrics-port``): ``/metrics``
and ``/healthz``, the same handlers as an API process's, and nothing else.

A worker answers no API, but an operator still scrapes each process (its claims, the runs
it executes, its commits) and a supervisor still asks whether it can work. With API keys
configured ``/metrics`` needs one, as on an API process; ``/healthz`` never does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse

from culm.api import errors, routes_ops
from culm.api.metrics import Metrics
from culm.api.wire import JSONResponse, OrjsonRoute
from culm.config import Settings
from culm.engine import Engine


def probe_app(engine: Engine, settings: Settings) -> FastAPI:
    """An ASGI app serving ``engine``'s ``/metrics`` and ``/healthz``."""
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    api.state.engine = engine
    api.state.settings = settings
    api.state.metrics = Metrics()
    router = APIRouter(route_class=OrjsonRoute)
    router.add_api_route(
        "/healthz", routes_ops.healthz, methods=["GET"], response_class=JSONResponse
    )
    router.add_api_route(
        "/metrics", routes_ops.metrics, methods=["GET"], response_class=PlainTextResponse
    )
    api.include_router(router)
    api.state.routes = list(router.routes)  # for the ``Allow`` header of a 405
    errors.install(api)
    return api


class ProbeServer(uvicorn.Server):
    """uvicorn's server inside a process that handles its own signals: SIGTERM drains the
    worker, and the probe keeps answering while it drains (uvicorn would otherwise take
    SIGTERM for itself and stop at once)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def probe_server(engine: Engine, settings: Settings) -> ProbeServer:
    """A server for ``probe_app``: run ``serve(sockets=[...])`` in a task, set
    ``should_exit`` to stop it."""
    config = uvicorn.Config(
        probe_app(engine, settings),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return ProbeServer(config)
