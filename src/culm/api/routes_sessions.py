"""Sessions: create, get, list by newest first (filtered by metadata), delete, messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from culm.api import schemas
from culm.api.auth import EngineDep, SettingsDep, TenantDep
from culm.api.errors import error_docs
from culm.api.pages import listing
from culm.api.wire import MAX_CURSOR, BadRequest, JSONResponse, OrjsonRoute

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=OrjsonRoute)

Limit = Annotated[int, Query(ge=1, le=1000)]
METADATA_PREFIX = "metadata."
MAX_FILTERS = 16
"""Most ``metadata.KEY=VALUE`` filters in one listing."""
MAX_FILTER_KEY = 256
"""Longest metadata key a filter may name."""

_SESSION_LINKS = {
    name: {"operationId": name, "parameters": {"session_id": "$response.body#/id"}}
    for name in ("get_session", "list_messages", "start_run_on_session", "delete_session")
}


@router.post(
    "",
    status_code=201,
    response_class=JSONResponse,
    responses={
        201: {"model": schemas.Session, "links": _SESSION_LINKS},
        **error_docs(400, 401, 404, 413, 422),
    },
)
async def create_session(
    engine: EngineDep, tenant: TenantDep, body: schemas.CreateSession | None = None
) -> Response:
    """Create a session; with ``parent_id`` it is a child of that session."""
    body = body or schemas.CreateSession()
    session = await engine.create_session(
        tenant=tenant, metadata=body.metadata, parent_id=body.parent_id
    )
    return JSONResponse(session.to_dict(), status_code=201)


@router.get(
    "",
    response_class=JSONResponse,
    responses={200: {"model": schemas.SessionPage}, **error_docs(401, 422)},
)
async def list_sessions(
    request: Request,
    engine: EngineDep,
    tenant: TenantDep,
    settings: SettingsDep,
    limit: Limit = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The tenant's sessions, newest first. Filter by metadata with ``?metadata.KEY=VALUE``
    (repeatable; values compare as strings); ``cursor`` is the previous page's
    ``next_cursor``. At most 16 filters, keys of at most 256 characters; a page stops early
    at ``max_page_bytes``."""
    metadata = _metadata_filters(request)
    return await listing(
        lambda n, before: engine.list_sessions(tenant, limit=n, before=before, metadata=metadata),
        limit=limit,
        budget=settings.max_page_bytes,
        start=cursor,
    )


def _metadata_filters(request: Request) -> dict[str, str]:
    metadata = {
        key.removeprefix(METADATA_PREFIX): value
        for key, value in request.query_params.items()
        if key.startswith(METADATA_PREFIX) and len(key) > len(METADATA_PREFIX)
    }
    if len(metadata) > MAX_FILTERS:
        raise BadRequest(f"at most {MAX_FILTERS} metadata filters, not {len(metadata)}")
    for key in metadata:
        if len(key) > MAX_FILTER_KEY:
            raise BadRequest(f"a metadata filter key is longer than {MAX_FILTER_KEY} characters")
    return metadata


@router.get(
    "/{session_id}",
    response_class=JSONResponse,
    responses={200: {"model": schemas.Session}, **error_docs(401, 404)},
)
async def get_session(session_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """One session."""
    return JSONResponse((await engine.get_session(session_id, tenant)).to_dict())


@router.delete("/{session_id}", status_code=204, responses=error_docs(401, 404, 409))
async def delete_session(
    session_id: str, request: Request, engine: EngineDep, tenant: TenantDep
) -> Response:
    """Delete a session with its child sessions, runs, events and messages; refused with 409
    while any of them has an active run. Their open event streams end."""
    tree = await engine.session_tree(session_id)
    await engine.delete_session(session_id, tenant)
    request.app.state.deletions.deleted(tree)
    return Response(status_code=204)


@router.get(
    "/{session_id}/messages",
    response_class=JSONResponse,
    responses={200: {"model": schemas.MessageList}, **error_docs(401, 404, 422)},
)
async def list_messages(
    session_id: str,
    engine: EngineDep,
    tenant: TenantDep,
    settings: SettingsDep,
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Limit = 1000,
) -> Response:
    """The session's conversation history, oldest first; ``after`` is a message id. A page
    stops early at ``max_page_bytes``; ``next_after`` is then (and when the page is full)
    the id to pass as ``after`` for the rest, else null."""
    return await listing(
        lambda n, since: engine.messages(session_id, tenant=tenant, after=since, limit=n),
        limit=limit,
        budget=settings.max_page_bytes,
        start=after,
        next_field="next_after",
    )
