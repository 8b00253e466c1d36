"""The ASGI application: the engine opened for the server's lifetime, the routes around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

import culm
from culm import dashboard
from culm.agent.app import App
from culm.api import (
    docs,
    errors,
    routes_dashboard,
    routes_events,
    routes_inputs,
    routes_ops,
    routes_runs,
    routes_schedules,
    routes_sessions,
    routes_webhooks,
)
from culm.api.limits import BodyLimit
from culm.api.metrics import Metrics
from culm.api.sse import Deletions, Shutdown
from culm.config import Settings
from culm.engine import Engine
from culm.webhooks import Webhooks

DESCRIPTION = """\
Run LLM agents in the background and follow them from anywhere.

Every error is `{"error": {"code", "message"}}`. With API keys configured, send
`Authorization: Bearer KEY` (or `X-API-Key: KEY`); each key belongs to a tenant, which sees
only its own sessions and runs. `/docs` and `/redoc` also take the key as `?api_key=KEY`.

The [dashboard](/) shows the same runs, schedules and sessions in a browser.
"""


def create_app(app: App, settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The HTTP API for ``app``'s agents. The engine opens when the server starts and closes
    (interrupting what still runs) when it stops; pass ``engine`` to use one built elsewhere
    (still opened and closed here)."""

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        async with (
            engine or Engine(app, settings) as opened,
            Webhooks(opened.webhook_store(), settings) as webhooks,
        ):
            api.state.engine = opened
            api.state.webhooks = webhooks
            try:
                yield
            finally:
                api.state.shutdown.trigger()

    api = FastAPI(
        title="culm",
        version=culm.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # operation ids are the route functions' names: stable, and what OpenAPI links name
        generate_unique_id_function=lambda route: route.name,
        # served by culm.api.docs: offline, and behind the API keys
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    api.state.settings = settings
    api.state.metrics = Metrics()
    api.state.shutdown = Shutdown()
    api.state.deletions = Deletions()
    errors.install(api)
    api.add_middleware(
        BodyLimit, limit=settings.max_request_bytes, timeout=settings.body_timeout_seconds
    )
    routers = [
        module.router
        for module in (
            # a request is matched against the routes in this order: the runs' routes,
            # which every run takes (start, stream, get, cancel), come first
            routes_runs,
            routes_inputs,
            routes_events,
            routes_sessions,
            routes_ops,
            routes_schedules,
            routes_webhooks,
        )
    ]
    routers += [routes_dashboard.router, dashboard.router()]
    for router in routers:
        api.include_router(router)
    docs.install(api)
    # every route, for the ``Allow`` header of a 405 (see ``errors``)
    api.state.routes = [route for router in (*routers, docs.router) for route in router.routes]
    _document_agents(api, app)
    return api


def _document_agents(api: FastAPI, app: App) -> None:
    """Name this server's agents as examples of the ``agent`` field of run starts, so the
    documentation (and tools that read it) show values that work."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        fresh = api.openapi_schema is None
        schema = build()  # FastAPI builds it once and keeps it
        if fresh:
            for name in ("StartRun", "StartRunAnywhere", "ScheduleFields"):
                model = schema.get("components", {}).get("schemas", {}).get(name)
                if model is not None:
                    model["properties"]["agent"]["examples"] = sorted(app.agents)
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
