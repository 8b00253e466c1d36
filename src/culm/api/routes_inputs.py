"""People in the loop: answering a run that waits (``POST /v1/runs/{id}/input``) and
sending a message to a running model agent (``POST /v1/runs/{id}/messages``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from culm.api import schemas
from culm.api.auth import EngineDep, TenantDep
from culm.api.errors import error_docs
from culm.api.routes_runs import actor
from culm.api.wire import JSONResponse, OrjsonRoute

router = APIRouter(prefix="/v1", tags=["runs"], route_class=OrjsonRoute)


@router.post(
    "/runs/{run_id}/input",
    status_code=202,
    response_class=JSONResponse,
    responses={202: {"model": schemas.Run}, **error_docs(400, 401, 404, 409, 413, 422)},
)
async def give_input(
    run_id: str, body: schemas.RunInput, engine: EngineDep, tenant: TenantDep
) -> Response:
    """Answer what the run waits for (its ``waiting``, also in its ``run.waiting`` event):
    ``{"call_id", "approve": true|false, "reason"?, "arguments"?}`` for an approval (the
    tool runs, with the edited arguments if given, or the model reads the refusal and its
    reason), ``{"call_id", "answer"}`` for a question (checked against its schema: 422 and
    the run keeps waiting when it does not fit). The run goes on at once (``pending``
    until a process takes it up); 409 ``not_waiting`` when it does not wait on
    ``call_id``."""
    fields = body.model_fields_set
    run = await engine.answer(
        run_id,
        body.call_id,
        approve=body.approve,
        reason=body.reason,
        arguments=body.arguments,
        **({"answer": body.answer} if "answer" in fields else {}),
        by=actor(tenant),
        tenant=tenant,
    )
    return JSONResponse(run.to_dict(), status_code=202)


@router.post(
    "/runs/{run_id}/messages",
    status_code=202,
    response_class=JSONResponse,
    responses={202: {"model": schemas.SentMessage}, **error_docs(400, 401, 404, 409, 413, 422)},
)
async def send_message(
    run_id: str, body: schemas.SendMessage, engine: EngineDep, tenant: TenantDep
) -> Response:
    """Add a user message to a model agent's active run: it is taken in at the run's next
    round boundary (event ``message.injected``), without cancelling or restarting
    anything. 409 when the run has ended or is not a model agent's."""
    sent = await engine.send_message(run_id, body.content, tenant=tenant)
    return JSONResponse(sent.to_dict(), status_code=202)
