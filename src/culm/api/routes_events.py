"""Event streams of a run and of a session: Server-Sent Events, or JSON pages for polling.

A stream is a cursor into the durable log: it sends every event after the client's cursor
(``Last-Event-ID`` or ``?after=``), then follows the live tail. A run's stream ends after
its terminal event; a session's stream ends only when the session is deleted. A JSON page
stops at ``limit`` events or ``max_page_bytes``, whichever comes first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from culm.api import schemas
from culm.api.auth import SECURED, CallerDep, EngineDep, SettingsDep, TenantDep
from culm.api.errors import error_docs
from culm.api.pages import collect
from culm.api.sse import Deletions, Until, encode_run, encode_session, event_stream, with_pos
from culm.api.wire import MAX_CURSOR, JSONResponse, OrjsonRoute
from culm.engine import Engine
from culm.errors import InvalidInput, NotFound
from culm.events import Event

router = APIRouter(prefix="/v1", tags=["events"], route_class=OrjsonRoute)

After = Annotated[
    int, Query(ge=0, le=MAX_CURSOR, description="Send only what comes after this cursor.")
]
Limit = Annotated[
    int,
    Query(
        ge=1,
        le=10_000,
        description="Most events in a JSON page (which also stops at ``max_page_bytes``).",
    ),
]
SESSION_CHECK_HEARTBEATS = 4
"""A quiet session stream checks that its session still exists every this many heartbeats
(deletions through this process end it at once)."""
Format = Annotated[
    Literal["sse", "json"] | None,
    Query(description="Server-Sent Events (the default) or one JSON page."),
]
LastEventId = Annotated[
    int | None,
    Header(
        ge=0, le=MAX_CURSOR, description="Set by EventSource on reconnect; wins over ``after``."
    ),
]

_SSE_EVENT = {
    "type": "object",
    "description": "One Server-Sent Event; comment lines (`: ping`) keep an idle stream open.",
    "properties": {
        "id": {"type": "string", "description": "The cursor: seq in a run, pos in a session."},
        "event": {"type": "string", "description": "The event type."},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/Event"},
        },
    },
    "required": ["id", "event", "data"],
}

_DOCS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": schemas.EventPage,
        "description": "A stream of events (`text/event-stream`), or one page of them.",
        "content": {"text/event-stream": {"itemSchema": _SSE_EVENT}},
    },
    204: {"description": "The client has seen the run's terminal event: nothing will come."},
    **error_docs(401, 404, 422),
}


def wants_json(request: Request, format: str | None) -> bool:
    """JSON when asked by ``?format=json`` or by an Accept header naming JSON but not SSE."""
    if format is not None:
        return format == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


def _seq(event: Event) -> int:
    return event.seq


def _pos(event: Event) -> int:
    return event.pos


def _event_json(event: Event) -> bytes:
    return event.to_json()


def _page(events: list[bytes], next_after: int, done: bool) -> Response:
    # each event's JSON is already encoded (and shared with the streams): join, not re-encode
    body = b'{"data":[%b],"next_after":%d,"done":%b}' % (
        b",".join(events),
        next_after,
        b"true" if done else b"false",
    )
    return Response(body, media_type="application/json")


@router.get(
    "/runs/{run_id}/events", response_class=JSONResponse, responses=_DOCS, openapi_extra=SECURED
)
async def run_events(
    run_id: str,
    request: Request,
    caller: CallerDep,
    after: After = 0,
    limit: Limit = 1000,
    format: Format = None,
    last_event_id: LastEventId = None,
) -> Response:
    """The run's events after sequence number ``after``: everything stored, then live,
    ending after the terminal event. SSE ``id:`` is the sequence number. Resuming after the
    terminal event answers 204, which tells an ``EventSource`` to stop reconnecting."""
    engine, tenant, settings = caller.engine, caller.tenant, caller.settings
    start = last_event_id if last_event_id is not None else after
    as_json = wants_json(request, format)
    # a stream follows the log from the bus and the log, so a run read a moment ahead of
    # the announcements costs it nothing: it is read without waiting for a commit under way
    run = await engine.get_run(run_id, tenant, latest=not as_json)
    if as_json:
        page = await collect(
            lambda n, after: engine.events(run_id, after=after or 0, limit=n, tenant=tenant),
            start=start,
            cursor=_seq,
            encode=_event_json,
            limit=limit,
            budget=settings.max_page_bytes,
        )
        last = page.last
        next_after = last.seq if last is not None else start
        done = bool(last is not None and last.terminal) or (
            run.status.terminal and next_after >= run.state.last_seq
        )
        return _page(page.items, next_after, done)
    if start > run.state.last_seq and not run.status.terminal:
        raise InvalidInput(
            f"the cursor {start} is beyond the last event of run {run_id} "
            f"({run.state.last_seq}); resume from an event you received"
        )
    if run.status.terminal and start >= run.state.last_seq:
        # the client has seen the end: 204 tells an EventSource to stop reconnecting
        return Response(status_code=204)
    state = request.app.state
    return event_stream(
        engine.follow(run, start),
        encode_run,
        heartbeat=state.settings.heartbeat_seconds,
        metrics=state.metrics,
        shutdown=state.shutdown,
        chunk_bytes=settings.max_page_bytes,
    )


@router.get("/sessions/{session_id}/events", response_class=JSONResponse, responses=_DOCS)
async def session_events(
    session_id: str,
    request: Request,
    engine: EngineDep,
    tenant: TenantDep,
    settings: SettingsDep,
    after: After = 0,
    limit: Limit = 1000,
    format: Format = None,
    last_event_id: LastEventId = None,
) -> Response:
    """Events of every run of the session, in log order, after log position ``after``; each
    carries its ``run_id`` and its ``pos``, which is the SSE ``id:``. The stream does not end
    while the session exists (it may get more runs); when the session is deleted it ends
    (a reconnect then answers 404, which stops an ``EventSource``)."""
    start = last_event_id if last_event_id is not None else after
    await engine.get_session(session_id, tenant)
    if wants_json(request, format):
        page = await collect(
            lambda n, after: engine.session_events(
                session_id, after=after or 0, limit=n, tenant=tenant
            ),
            start=start,
            cursor=_pos,
            encode=with_pos,
            limit=limit,
            budget=settings.max_page_bytes,
        )
        next_after = page.last.pos if page.last is not None else start
        return _page(page.items, next_after, False)
    state = request.app.state
    return event_stream(
        engine.subscribe_session(session_id, start, tenant=tenant),
        encode_session,
        heartbeat=settings.heartbeat_seconds,
        metrics=state.metrics,
        shutdown=state.shutdown,
        chunk_bytes=settings.max_page_bytes,
        until=_until_deleted(state.deletions, engine, session_id, tenant),
    )


def _until_deleted(deletions: Deletions, engine: Engine, session_id: str, tenant: str) -> Until:
    async def alive() -> bool:
        try:
            await engine.get_session(session_id, tenant)
        except NotFound:
            return False
        return True

    return Until(deletions, session_id, alive, SESSION_CHECK_HEARTBEATS)
