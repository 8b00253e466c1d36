"""The in-memory handle of an active run: its cancel token, live state and write path.

Gone when the run ends; the log and the runs table remain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from culm import events as ev
from culm.agent.app import AgentSpec
from culm.agent.budget import Budget
from culm.agent.context import CancelToken, RunContext
from culm.errors import RunCancelled
from culm.events import Event
from culm.models import Run, RunState
from culm.projection import advance
from culm.runtime.children import ChildSet, SpawnDoor
from culm.runtime.history import SessionHistory
from culm.runtime.limits import effective_limits
from culm.runtime.log import EventLog

log = logging.getLogger("culm.runner")


class Runner:
    """Executes one run: emits its events in order and ends it with exactly one terminal."""

    __slots__ = (
        "_clock",
        "_log",
        "_on_end",
        "children",
        "done",
        "finalized",
        "run",
        "spec",
        "state",
        "task",
        "token",
    )

    def __init__(
        self,
        run: Run,
        spec: AgentSpec,
        event_log: EventLog,
        on_end: Callable[[Runner], None],
        clock: Callable[[], float],
        *,
        door: SpawnDoor | None = None,
        budget: Budget | None = None,
        depth: int = 0,
    ) -> None:
        """With ``door`` the run may spawn children, within ``budget`` (its agent's limits
        capped by its parent's grant), ``depth`` levels below its root."""
        self.run = run
        self.spec = spec
        self.state: RunState = run.state
        self.token = CancelToken()
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.finalized = False
        self._log = event_log
        self._on_end = on_end
        self._clock = clock
        self.children: ChildSet | None = None
        if door is not None:
            limits = effective_limits(spec.spawn, door.settings)
            self.children = ChildSet(self, door, limits, budget or spec.budget, depth)

    def snapshot(self) -> Run:
        """The run record with its live state, ahead of what the database has yet."""
        r = self.run
        return Run(
            id=r.id,
            session_id=r.session_id,
            tenant=r.tenant,
            agent=r.agent,
            input=r.input,
            trigger=r.trigger,
            created_at=r.created_at,
            state=self.state,
            parent_run_id=r.parent_run_id,
            schedule_id=r.schedule_id,
            idempotency_key=r.idempotency_key,
        )

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        """Append an event to this run's stream; after the run's end nothing more is taken."""
        if self.finalized:
            raise RunCancelled(self.token.by or "engine", self.token.reason)
        self._append(type, data)
        await self._log.backpressure()

    async def flush(self) -> None:
        """Return once everything this run emitted so far is committed."""
        await self._log.flush()

    def _append(self, type: str, data: dict[str, Any]) -> None:
        r = self.run
        event = Event(
            self.state.last_seq + 1,
            r.id,
            r.session_id,
            type,
            data,
            ts=self._clock(),
            parent_run_id=r.parent_run_id,
        )
        self.state = advance(self.state, event)
        self._log.append(event, self.state)

    async def finish(self, type: str, data: dict[str, Any]) -> bool:
        """Write the terminal event, once; False if the run had already ended."""
        if self.finalized:
            return False
        self.finalized = True
        if self.children is not None:
            self.children.abandon()  # only stopped-outright runs still have live children
        self._append(type, data)
        try:
            await self._log.flush()
        finally:  # even when the flush is interrupted by shutdown, which flushes last
            self.done.set()
            self._on_end(self)
        return True

    async def execute(self) -> None:
        """Run the agent to its end. Never raises: every outcome becomes a terminal event,
        written after every child's end (see ``ChildSet.settle``)."""
        r = self.run
        children = self.children
        context = RunContext(
            run_id=r.id,
            session_id=r.session_id,
            tenant=r.tenant,
            agent=r.agent,
            emit=self.emit,
            cancel_token=self.token,
            history=SessionHistory(self._log.store, r.session_id, r.id, self._clock),
            spawner=children,
            budget=children.budget if children is not None else self.spec.budget,
            parent_run_id=r.parent_run_id,
            depth=children.depth if children is not None else 0,
        )
        type: str
        data: dict[str, Any]
        try:
            self.token.raise_if_requested()
            await self.emit(ev.RUN_STARTED, {"agent": r.agent})
            output = await self.spec.body(context, self.spec.parse_input(r.input))
            orjson.dumps(output)  # an output nobody could read back is a failure, not a result
        except RunCancelled as exc:
            type, data = ev.RUN_CANCELLED, _cancelled(exc.by, exc.reason, forced=False)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if self.token.requested:
                type = ev.RUN_CANCELLED
                data = _cancelled(self.token.by, self.token.reason, forced=True)
            else:
                type, data = ev.RUN_INTERRUPTED, {"error": "the server shut down"}
        except Exception as exc:
            log.info("run %s failed", r.id, exc_info=True)
            type, data = ev.RUN_FAILED, {"error": _describe(exc)}
        else:
            type, data = ev.RUN_COMPLETED, {"output": output}
        try:
            if children is not None:
                await children.settle(_ENDINGS[type])
        finally:
            await self.finish(type, data)


_ENDINGS = {
    ev.RUN_COMPLETED: "completed",
    ev.RUN_FAILED: "failed",
    ev.RUN_CANCELLED: "was cancelled",
    ev.RUN_INTERRUPTED: "was interrupted",
}


def _cancelled(by: str, reason: str | None, *, forced: bool) -> dict[str, Any]:
    error = f"cancelled by {by}" + (f": {reason}" if reason else "")
    return {"by": by, "reason": reason, "forced": forced, "error": error}


def _describe(exc: BaseException) -> str:
    message = str(exc)
    if isinstance(exc, TypeError) and "JSON" in message:
        return f"the agent's output is not JSON serializable: {message}"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
