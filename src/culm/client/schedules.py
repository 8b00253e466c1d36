"""The client's schedule calls; ``AsyncClient`` and ``Client`` inherit them from here.

    with culm.Client() as client:
        s = client.create_schedule("report", cron="0 9 * * 1-5", timezone="Europe/Paris")
        print(s["next_fire_at"])
        firing = client.trigger_schedule(s["id"])   # now, without moving the cadence

Times may be given as ``datetime`` (with a time zone), ISO 8601 text with an offset, or
seconds since the epoch; they come back as ISO 8601 text in UTC.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, Protocol, TypedDict, TypeVar

from culm.client.types import Page

P = ParamSpec("P")
T = TypeVar("T")

TimeLike = datetime | str | float
"""A time: an aware ``datetime``, ISO 8601 text with an offset, or epoch seconds."""


class FiringCounts(TypedDict):
    started: int
    skipped_overlap: int
    missed: int
    failed_to_start: int
    completed: int
    failed: int
    consecutive_failures: int


class ScheduleInfo(TypedDict):
    """A schedule as ``culm.Schedule.to_dict()`` gives it (times in ISO 8601)."""

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
    session: str
    overlap: str
    misfire: str
    misfire_grace: float
    max_catch_up: int
    max_lateness: float
    session_id: str | None
    paused: bool
    next_fire_at: str | None
    created_at: str
    updated_at: str
    last_fired_at: str | None
    last_run_id: str | None
    counts: FiringCounts


class FiringInfo(TypedDict):
    """One entry of a schedule's ledger: a fire time and what became of it."""

    id: int
    schedule_id: str
    scheduled_at: str
    fired_at: str
    outcome: str
    run_id: str | None
    run_status: str | None
    manual: bool
    count: int
    detail: str | None


class Caller(Protocol):
    """What the calls of a client's mixins need of the client."""

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any: ...


class ScheduleCalls:
    """Schedules: create, read, change, pause, resume, trigger, delete, the ledger."""

    async def create_schedule(
        self: Caller,
        agent: str,
        input: Any = None,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        every: float | None = None,
        anchor: TimeLike | None = None,
        at: TimeLike | None = None,
        start_at: TimeLike | None = None,
        end_at: TimeLike | None = None,
        session: str | None = None,
        overlap: str | None = None,
        misfire: str | None = None,
        misfire_grace: float | None = None,
        max_catch_up: int | None = None,
        max_lateness: float | None = None,
        name: str | None = None,
    ) -> ScheduleInfo:
        """A new schedule of ``agent``: give exactly one of ``cron`` (read in ``timezone``),
        ``every`` (seconds) or ``at``. ``session`` is ``new`` (default) or ``shared``;
        ``overlap`` ``skip`` (default), ``allow``, ``enqueue`` or ``cancel_previous``;
        ``misfire`` ``run_once`` (default), ``skip`` or ``catch_up``."""
        fields = {
            "cron": cron,
            "timezone": timezone,
            "every": every,
            "anchor": anchor,
            "at": at,
            "start_at": start_at,
            "end_at": end_at,
            "session": session,
            "overlap": overlap,
            "misfire": misfire,
            "misfire_grace": misfire_grace,
            "max_catch_up": max_catch_up,
            "max_lateness": max_lateness,
            "name": name,
        }
        body = {"agent": agent, "input": input}
        body.update({k: _wire(v) for k, v in fields.items() if v is not None})
        result: ScheduleInfo = await self._call("POST", "/v1/schedules", json=body)
        return result

    async def get_schedule(self: Caller, schedule_id: str) -> ScheduleInfo:
        """The schedule, its next fire time and its counters."""
        result: ScheduleInfo = await self._call("GET", f"/v1/schedules/{schedule_id}")
        return result

    async def list_schedules(
        self: Caller, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[ScheduleInfo]:
        """Newest first."""
        params = {"limit": limit, "cursor": cursor}
        body = await self._call("GET", "/v1/schedules", params=params)
        return Page(body["data"], body.get("next_cursor"))

    async def update_schedule(self: Caller, schedule_id: str, /, **changes: Any) -> ScheduleInfo:
        """Change fields (those of ``create_schedule``); a new cadence fires from its first
        fire time after now. Setting one of ``cron``, ``every`` or ``at`` clears the others."""
        body = {k: _wire(v) for k, v in changes.items()}
        path = f"/v1/schedules/{schedule_id}"
        result: ScheduleInfo = await self._call("PATCH", path, json=body)
        return result

    async def delete_schedule(self: Caller, schedule_id: str) -> None:
        """Delete the schedule and its ledger; the runs it started stay."""
        await self._call("DELETE", f"/v1/schedules/{schedule_id}")

    async def pause_schedule(self: Caller, schedule_id: str) -> ScheduleInfo:
        """Stop firing until resumed."""
        path = f"/v1/schedules/{schedule_id}/pause"
        result: ScheduleInfo = await self._call("POST", path)
        return result

    async def resume_schedule(self: Caller, schedule_id: str) -> ScheduleInfo:
        """Fire again, from the first fire time after now."""
        path = f"/v1/schedules/{schedule_id}/resume"
        result: ScheduleInfo = await self._call("POST", path)
        return result

    async def trigger_schedule(self: Caller, schedule_id: str) -> FiringInfo:
        """Fire now without moving the cadence; the ledger entry says whether a run
        started (``outcome`` and ``run_id``)."""
        path = f"/v1/schedules/{schedule_id}/trigger"
        result: FiringInfo = await self._call("POST", path)
        return result

    async def schedule_firings(
        self: Caller, schedule_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[FiringInfo]:
        """The schedule's ledger, newest first."""
        params = {"limit": limit, "cursor": cursor}
        body = await self._call("GET", f"/v1/schedules/{schedule_id}/firings", params=params)
        after = body.get("next_cursor")
        return Page(body["data"], None if after is None else str(after))


def _wire(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# The blocking twins. ``culm.client.sync`` has the same helper; it cannot be imported here
# because ``Client`` there inherits from this module.


def _blocking(
    method: Callable[Concatenate[Any, P], Awaitable[T]],
) -> Callable[Concatenate[Any, P], T]:
    @functools.wraps(method)
    def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self._portal.call(functools.partial(method, self._async, *args, **kwargs))
        return result

    return call


class BlockingScheduleCalls:
    """``ScheduleCalls`` for the blocking ``Client``: same arguments, same results."""

    create_schedule = _blocking(ScheduleCalls.create_schedule)
    get_schedule = _blocking(ScheduleCalls.get_schedule)
    list_schedules = _blocking(ScheduleCalls.list_schedules)
    update_schedule = _blocking(ScheduleCalls.update_schedule)
    delete_schedule = _blocking(ScheduleCalls.delete_schedule)
    pause_schedule = _blocking(ScheduleCalls.pause_schedule)
    resume_schedule = _blocking(ScheduleCalls.resume_schedule)
    trigger_schedule = _blocking(ScheduleCalls.trigger_schedule)
    schedule_firings = _blocking(ScheduleCalls.schedule_firings)
