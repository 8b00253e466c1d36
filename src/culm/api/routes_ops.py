"""What a server offers and how it is doing: the agents, ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import inspect

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from culm.api import schemas
from culm.api.auth import EngineDep, TenantDep
from culm.api.errors import error_docs, error_response
from culm.api.metrics import render
from culm.api.wire import JSONResponse, OrjsonRoute, dumps

router = APIRouter(route_class=OrjsonRoute)


@router.get(
    "/v1/agents",
    tags=["agents"],
    response_class=JSONResponse,
    responses={200: {"model": schemas.AgentList}, **error_docs(401)},
)
async def list_agents(request: Request, engine: EngineDep, tenant: TenantDep) -> Response:
    """The agents this server runs, with their descriptions and input schemas."""
    state = request.app.state
    body: bytes | None = getattr(state, "agents_json", None)
    if body is None:  # agents are registered before serving; their schemas cost to build
        agents = sorted(engine.app.agents.values(), key=lambda spec: spec.name)
        body = state.agents_json = dumps({"data": [spec.to_dict() for spec in agents]})
    return Response(body, media_type="application/json")


@router.get(
    "/healthz",
    tags=["operations"],
    response_class=JSONResponse,
    responses={200: {"model": schemas.Health}, **error_docs(503)},
)
async def healthz(engine: EngineDep) -> Response:
    """200 when the process is serving, its database answers and the engine reports nothing
    wrong (a full disk, say); 503 with the reason otherwise. Needs no key, so load balancers
    can ask."""
    try:
        await engine.ping()
    except Exception as exc:
        return error_response(503, "unavailable", f"the database is not reachable: {exc}")
    problem = await _engine_problem(engine)
    if problem:
        return error_response(503, "unavailable", problem)
    # a bus that is down only delays other processes' news (the log is polled): degraded
    bus = engine.bus_health()
    status = "ok" if bus is None else "degraded"
    return JSONResponse({"status": status, "database": "ok", "bus": bus or "ok"})


async def _engine_problem(engine: object) -> str | None:
    """What the engine's ``health()`` (plain or async, where it has one) says is wrong: it
    answers None (or an empty string) when all is well, else the reason as a string, or an
    object with ``ok`` and ``reason`` attributes."""
    health = getattr(engine, "health", None)
    if health is None:
        return None
    result = health()
    if inspect.isawaitable(result):
        result = await result
    if result is None or isinstance(result, str):
        return result or None
    if getattr(result, "ok", False):
        return None
    return str(getattr(result, "reason", None) or result)


@router.get(
    "/metrics",
    tags=["operations"],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **error_docs(401)},
)
async def metrics(request: Request, engine: EngineDep, tenant: TenantDep) -> Response:
    """Prometheus text: runs by status, queue depth, events appended, live subscribers, open
    streams, event delivery delay. Needs a key (any tenant's) when keys are configured."""
    runs = await engine.count_runs()
    text = render(request.app.state.metrics, engine, runs)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
