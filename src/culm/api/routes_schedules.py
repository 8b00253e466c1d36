"""Schedules: create, list, get, change, delete, pause, resume, trigger now, the ledger.

Times go over the wire as ISO 8601 with an offset (``2030-01-07T09:00:00+01:00``) or as
seconds since the epoch, and come back as ISO 8601 in UTC. Runs that schedules start are
listed by ``GET /v1/runs?schedule_id=``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from culm.api.auth import EngineDep, SettingsDep, TenantDep
from culm.api.errors import error_docs
from culm.api.pages import listing
from culm.api.wire import JSONResponse, OrjsonRoute
from culm.models import FiringOutcome, Misfire, Overlap, RunStatus, ScheduleSpec, SessionMode

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], route_class=OrjsonRoute)

_LINKS = {
    name: {"operationId": name, "parameters": {"schedule_id": "$response.body#/id"}}
    for name in (
        "get_schedule",
        "update_schedule",
        "pause_schedule",
        "resume_schedule",
        "trigger_schedule",
        "list_firings",
        "delete_schedule",
    )
}
Seconds = Annotated[float, Field(allow_inf_nan=False)]
Time = AwareDatetime


# requests


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleFields(_Request):
    """What a schedule runs and when; see ``culm.models.ScheduleSpec``."""

    agent: str = Field(max_length=256)
    input: Any = None
    cron: str | None = Field(default=None, max_length=256, examples=["0 9 * * 1-5"])
    """Five fields (minute hour day-of-month month day-of-week) or ``@daily``-style."""
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Paris"])
    """The IANA time zone the cron expression reads the clock in."""
    every: Seconds | None = Field(default=None, examples=[600])
    """Seconds between fire times, aligned on ``anchor`` (else ``start_at``, else now)."""
    anchor: Time | None = None
    at: Time | None = None
    """The one time a one-time schedule fires."""
    start_at: Time | None = None
    end_at: Time | None = None
    session: SessionMode = SessionMode.NEW
    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: Seconds = 60.0
    max_catch_up: int = 10
    max_lateness: Seconds = 3600.0
    name: str | None = Field(default=None, max_length=256)


class ScheduleChanges(_Request):
    """The fields to change; those left out keep their values. Setting one of ``cron``,
    ``every`` or ``at`` clears the other two."""

    agent: str | None = Field(default=None, max_length=256)
    input: Any = None
    cron: str | None = Field(default=None, max_length=256)
    timezone: str | None = Field(default=None, max_length=64)
    every: Seconds | None = None
    anchor: Time | None = None
    at: Time | None = None
    start_at: Time | None = None
    end_at: Time | None = None
    session: SessionMode | None = None
    overlap: Overlap | None = None
    misfire: Misfire | None = None
    misfire_grace: Seconds | None = None
    max_catch_up: int | None = None
    max_lateness: Seconds | None = None
    name: str | None = Field(default=None, max_length=256)


_REQUIRED = frozenset(
    [
        "agent",
        "timezone",
        "session",
        "overlap",
        "misfire",
        "misfire_grace",
        "max_catch_up",
        "max_lateness",
    ]
)
"""Fields that cannot be empty: null for them in a change means "leave it"."""


def _plain(value: Any) -> Any:
    return value.timestamp() if isinstance(value, datetime) else value


# responses


class Counts(BaseModel):
    started: int
    skipped_overlap: int
    missed: int
    failed_to_start: int
    completed: int
    failed: int
    consecutive_failures: int


class Schedule(BaseModel):
    id: str
    name: str | None
    agent: str
    input: Any
    cron: str | None
    timezone: str
    every: float | None
    anchor: str | None
    at: str | None
    start_at: str | None
    end_at: str | None
    session: SessionMode
    overlap: Overlap
    misfire: Misfire
    misfire_grace: float
    max_catch_up: int
    max_lateness: float
    session_id: str | None
    """The session every firing continues, with ``session: shared``."""
    paused: bool
    next_fire_at: str | None
    """Null once no fire time is left."""
    created_at: str
    updated_at: str
    last_fired_at: str | None
    last_run_id: str | None
    counts: Counts


class SchedulePage(BaseModel):
    data: list[Schedule]
    next_cursor: str | None


class Firing(BaseModel):
    id: int
    schedule_id: str
    scheduled_at: str
    fired_at: str
    outcome: FiringOutcome
    run_id: str | None
    run_status: RunStatus | None
    manual: bool
    """From "trigger now"."""
    count: int
    """How many fire times a ``missed`` entry stands for."""
    detail: str | None


class FiringPage(BaseModel):
    data: list[Firing]
    next_cursor: int | None


# routes


@router.post(
    "",
    status_code=201,
    response_class=JSONResponse,
    responses={
        201: {"model": Schedule, "links": _LINKS},
        **error_docs(400, 401, 404, 413, 422),
    },
)
async def create_schedule(body: ScheduleFields, engine: EngineDep, tenant: TenantDep) -> Response:
    """Create a schedule: exactly one of ``cron`` (in ``timezone``), ``every`` or ``at``.
    An invalid cron expression, unknown time zone or ``end_at`` before ``start_at`` is 422,
    an unknown agent 404; nothing is stored then."""
    fields = {name: _plain(value) for name, value in body.model_dump().items()}
    schedule = await engine.create_schedule(ScheduleSpec(**fields), tenant=tenant)
    return JSONResponse(schedule.to_dict(), status_code=201)


@router.get(
    "",
    response_class=JSONResponse,
    responses={200: {"model": SchedulePage}, **error_docs(401, 422)},
)
async def list_schedules(
    engine: EngineDep,
    tenant: TenantDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The tenant's schedules, newest first; ``cursor`` is the previous page's
    ``next_cursor``."""
    return await listing(
        lambda n, before: engine.list_schedules(tenant, limit=n, before=before),
        limit=limit,
        budget=settings.max_page_bytes,
        start=cursor,
    )


@router.get(
    "/{schedule_id}",
    response_class=JSONResponse,
    responses={200: {"model": Schedule}, **error_docs(401, 404)},
)
async def get_schedule(schedule_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """The schedule, its next fire time and its counters."""
    return JSONResponse((await engine.get_schedule(schedule_id, tenant)).to_dict())


@router.patch(
    "/{schedule_id}",
    response_class=JSONResponse,
    responses={200: {"model": Schedule}, **error_docs(400, 401, 404, 409, 413, 422)},
)
async def update_schedule(
    schedule_id: str, body: ScheduleChanges, engine: EngineDep, tenant: TenantDep
) -> Response:
    """Change some fields. A new cadence fires from its first fire time after now; other
    changes keep the next fire time. Invalid changes are 422 and change nothing."""
    changes = {name: _plain(getattr(body, name)) for name in body.model_fields_set}
    for name in _REQUIRED & changes.keys():
        if changes[name] is None:
            changes.pop(name)
    schedule = await engine.update_schedule(schedule_id, tenant=tenant, **changes)
    return JSONResponse(schedule.to_dict())


@router.delete("/{schedule_id}", status_code=204, responses=error_docs(401, 404))
async def delete_schedule(schedule_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """Delete the schedule and its ledger; the runs it started stay."""
    await engine.delete_schedule(schedule_id, tenant)
    return Response(status_code=204)


@router.post(
    "/{schedule_id}/pause",
    response_class=JSONResponse,
    responses={200: {"model": Schedule}, **error_docs(401, 404, 409)},
)
async def pause_schedule(schedule_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """Stop firing until resumed (idempotent)."""
    return JSONResponse((await engine.pause_schedule(schedule_id, tenant)).to_dict())


@router.post(
    "/{schedule_id}/resume",
    response_class=JSONResponse,
    responses={200: {"model": Schedule}, **error_docs(401, 404, 409)},
)
async def resume_schedule(schedule_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """Fire again from the first fire time after now (idempotent); fire times while paused
    are neither run nor counted as missed."""
    return JSONResponse((await engine.resume_schedule(schedule_id, tenant)).to_dict())


@router.post(
    "/{schedule_id}/trigger",
    status_code=201,
    response_class=JSONResponse,
    responses={201: {"model": Firing}, **error_docs(401, 404)},
)
async def trigger_schedule(schedule_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """Fire now, also when paused, without moving the cadence; the overlap policy applies.
    The ledger entry says what happened: ``started`` (with ``run_id``), ``skipped_overlap``,
    ``waiting`` or ``failed_to_start``."""
    firing = await engine.trigger_schedule(schedule_id, tenant)
    return JSONResponse(firing.to_dict(), status_code=201)


@router.get(
    "/{schedule_id}/firings",
    response_class=JSONResponse,
    responses={200: {"model": FiringPage}, **error_docs(401, 404, 422)},
)
async def list_firings(
    schedule_id: str,
    engine: EngineDep,
    tenant: TenantDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """The schedule's ledger, newest first: each fire time, when it fired and what became
    of it; ``cursor`` is the previous page's ``next_cursor``."""
    return await listing(
        lambda n, before: engine.schedule_firings(schedule_id, tenant, limit=n, before=before),
        limit=limit,
        budget=settings.max_page_bytes,
        start=cursor,
    )
