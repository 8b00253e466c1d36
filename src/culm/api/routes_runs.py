"""Runs: start (on a session or on a new one), get, list, wait, cancel.

Every start goes through ``Engine.start_run`` with trigger ``http``: the same door as spawn
and schedules.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from culm.api import schemas
from culm.api.auth import SECURED, CallerDep, EngineDep, SettingsDep, TenantDep
from culm.api.errors import error_docs
from culm.api.pages import listing
from culm.api.routes_webhooks import WebhooksDep
from culm.api.wire import JSONResponse, OrjsonRoute
from culm.engine import Engine
from culm.errors import InvalidInput
from culm.ids import new_id
from culm.models import RunStatus, Trigger
from culm.store import RunFilter
from culm.webhooks import Created, Webhooks

router = APIRouter(prefix="/v1", tags=["runs"], route_class=OrjsonRoute)

MAX_WAIT = 300.0
"""Longest a wait request holds its connection; clients wanting longer ask again."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=256,
        description="A retried start with the same key returns the same run (200), "
        "never a second one.",
    ),
]

_RUN_LINKS = {
    name: {"operationId": name, "parameters": {"run_id": "$response.body#/id"}}
    for name in ("get_run", "wait_run", "cancel_run", "run_events")
}
_START_DOCS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": schemas.StartedRun,
        "description": "A replay: the run this key already started.",
        "links": _RUN_LINKS,
    },
    201: {
        "model": schemas.StartedRun,
        "description": "The new run (pending or already running).",
        "links": _RUN_LINKS,
    },
    202: {
        "model": schemas.StartedRun,
        "description": "With if_busy=steer on a busy session: the active run, which was "
        "sent the input as a message (steered).",
    },
    **error_docs(400, 401, 404, 409, 413, 422),
}


def actor(tenant: str) -> str:
    """Who a cancel or interrupt is recorded as having come from."""
    return f"http:{tenant}"


async def _start(
    engine: Engine,
    webhooks: Webhooks,
    tenant: str,
    body: schemas.StartRun,
    session_id: str | None,
    key: str | None,
    parent_run_id: str | None = None,
) -> Response:
    if parent_run_id is not None:
        if session_id is not None or key is not None or body.webhook is not None:
            raise InvalidInput(
                "a run with a parent_run_id gets a new child session, no Idempotency-Key "
                "and no webhook of its own"
            )
        child = await engine.spawn(
            parent_run_id, body.agent, body.input, tenant=tenant, by=actor(tenant)
        )
        return JSONResponse(child.to_dict(), status_code=201)
    hook = await _run_webhook(webhooks, tenant, body.webhook)
    try:
        started = await engine.start(
            body.agent,
            body.input,
            session_id=session_id,
            tenant=tenant,
            trigger=Trigger.HTTP,
            if_busy=body.if_busy,
            idempotency_key=key,
            by=actor(tenant),
            run_id=None if hook is None else hook.endpoint.run_id,
        )
    except BaseException:
        if hook is not None:
            await webhooks.forget_run(hook)
        raise
    run = started.run
    answer = run.to_dict()
    if started.steered is not None:
        answer["steered"] = started.steered.to_dict()
        return JSONResponse(answer, status_code=202)
    if hook is not None:
        if hook.endpoint.run_id == run.id:
            answer["webhook"] = hook.to_dict()
        else:  # the Idempotency-Key named a run started before: it keeps its own
            await webhooks.forget_run(hook)
    return JSONResponse(answer, status_code=201 if started.created else 200)


async def _run_webhook(
    webhooks: Webhooks, tenant: str, webhook: schemas.RunWebhook | str | None
) -> Created | None:
    """The run's own webhook endpoint, made before the run so its end cannot go unseen."""
    if webhook is None:
        return None
    if isinstance(webhook, str):
        webhook = schemas.RunWebhook(url=webhook)
    return await webhooks.create_for_run(tenant, new_id("run"), webhook.url, webhook.secret)


@router.post(
    "/sessions/{session_id}/runs",
    status_code=201,
    response_class=JSONResponse,
    responses=_START_DOCS,
    tags=["sessions"],
)
async def start_run_on_session(
    session_id: str,
    body: schemas.StartRun,
    engine: EngineDep,
    webhooks: WebhooksDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Start a run of ``agent`` on this session. When the session has an active run,
    ``if_busy`` decides: ``reject`` (409 ``session_busy`` naming the active run),
    ``enqueue`` (starts after it), ``interrupt`` (cancels it, then starts), ``steer``
    (202: the input is sent to the active model agent's run as a message, taken in at its
    next round; ``steered`` says which)."""
    return await _start(engine, webhooks, tenant, body, session_id, idempotency_key)


@router.post(
    "/runs",
    status_code=201,
    response_class=JSONResponse,
    responses=_START_DOCS,
    openapi_extra=SECURED,
)
async def start_run(
    body: schemas.StartRunAnywhere,
    caller: CallerDep,
    webhooks: WebhooksDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Start a run on ``session_id``, or on a new session when it is left out. With
    ``parent_run_id`` it is a child of that running run, as if that run had spawned it
    (409 ``spawn_refused`` when a limit says no)."""
    return await _start(
        caller.engine,
        webhooks,
        caller.tenant,
        body,
        body.session_id,
        idempotency_key,
        body.parent_run_id,
    )


@router.get(
    "/runs",
    response_class=JSONResponse,
    responses={200: {"model": schemas.RunPage}, **error_docs(401, 422)},
)
async def list_runs(
    engine: EngineDep,
    tenant: TenantDep,
    settings: SettingsDep,
    status: RunStatus | None = None,
    agent: Annotated[str | None, Query(max_length=256)] = None,
    session_id: Annotated[str | None, Query(max_length=64)] = None,
    trigger: Trigger | None = None,
    parent_run_id: Annotated[str | None, Query(max_length=64)] = None,
    schedule_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The tenant's runs, newest first, with their live state; ``cursor`` is the previous
    page's ``next_cursor``. A page stops early at ``max_page_bytes``."""
    where = RunFilter(
        tenant=tenant,
        status=status,
        agent=agent,
        session_id=session_id,
        trigger=trigger.value if trigger is not None else None,
        parent_run_id=parent_run_id,
        schedule_id=schedule_id,
    )
    return await listing(
        lambda n, before: engine.list_runs(where, limit=n, before=before),
        limit=limit,
        budget=settings.max_page_bytes,
        start=cursor,
    )


@router.get(
    "/runs/{run_id}",
    response_class=JSONResponse,
    responses={200: {"model": schemas.Run}, **error_docs(401, 404)},
    openapi_extra=SECURED,
)
async def get_run(run_id: str, caller: CallerDep) -> Response:
    """The run with its live state: status, round, last tool and phase, usage, output."""
    return JSONResponse((await caller.engine.get_run(run_id, caller.tenant)).to_dict())


@router.post(
    "/runs/{run_id}/wait",
    response_class=JSONResponse,
    responses={200: {"model": schemas.Run}, **error_docs(401, 404, 422)},
)
async def wait_run(
    run_id: str,
    request: Request,
    engine: EngineDep,
    tenant: TenantDep,
    timeout: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 30.0,
) -> Response:
    """The run once it has ended, or as it stands after ``timeout`` seconds (at most 300);
    check ``status`` to tell which."""
    # a client that hangs up stops the wait: it would otherwise hold its subscription
    # for up to five minutes on behalf of nobody
    waiting = asyncio.ensure_future(engine.wait(run_id, min(timeout, MAX_WAIT), tenant))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((waiting, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        waiting.cancel()  # a no-op once it has its result
        # both must have finished before their outcome is read: a task asked to cancel is
        # not cancelled yet, and reading its result then would be an error of our own
        await asyncio.gather(waiting, gone, return_exceptions=True)
    if waiting.cancelled():
        return Response(status_code=204)  # nobody is there to read it
    return JSONResponse(waiting.result().to_dict())


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_class=JSONResponse,
    responses={202: {"model": schemas.Run}, **error_docs(400, 401, 404, 409, 413, 422)},
    openapi_extra=SECURED,
)
async def cancel_run(
    run_id: str, caller: CallerDep, body: schemas.CancelRun | None = None
) -> Response:
    """Ask the run to stop (and its children); idempotent. The run stops at its next safe
    point, or is cancelled outright after the grace period; 409 ``run_finished`` when it had
    already ended otherwise."""
    reason = body.reason if body is not None else None
    tenant = caller.tenant
    run = await caller.engine.cancel(run_id, by=actor(tenant), reason=reason, tenant=tenant)
    return JSONResponse(run.to_dict(), status_code=202)


@router.get(
    "/runs/{run_id}/children",
    response_class=JSONResponse,
    responses={200: {"model": schemas.RunPage}, **error_docs(401, 404, 422)},
)
async def run_children(
    run_id: str,
    engine: EngineDep,
    tenant: TenantDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The runs this run spawned, newest first, with their live state."""
    return await listing(
        lambda n, before: engine.children(run_id, tenant=tenant, limit=n, before=before),
        limit=limit,
        budget=settings.max_page_bytes,
        start=cursor,
    )


@router.get(
    "/runs/{run_id}/tree",
    response_class=JSONResponse,
    responses={200: {"model": schemas.RunTree}, **error_docs(401, 404)},
)
async def run_tree(run_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """The run and every run spawned below it: each one's status, round, last tool and
    usage, and its subtree's usage."""
    return JSONResponse((await engine.run_tree(run_id, tenant)).to_dict())
