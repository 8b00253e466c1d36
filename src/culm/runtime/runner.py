"""The in-memory handle of an active run: its cancel token, live state and write path.

Gone when the run ends; the log and the runs table remain.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from culm import events as ev
from culm.agent.app import AgentSpec
from culm.agent.budget import Budget
from culm.agent.context import CancelToken, RunContext
from culm.agent.journal import Journal, Replay
from culm.agent.waiting import Waits
from culm.errors import InvalidPayload, RunCancelled, RunSuspended
from culm.events import Event, event_json, ids_json, parent_json
from culm.models import Run, RunState, RunStatus
from culm.payload import check, check_encoded
from culm.projection import apply
from culm.runtime.children import ChildSet, SpawnDoor
from culm.runtime.history import SessionHistory
from culm.runtime.limits import effective_limits
from culm.runtime.log import EventLog
from culm.runtime.mailbox import StoreMailbox
from culm.store.base import Fence

log = logging.getLogger("culm.runner")


class Runner:
    """Executes one run: emits its events in order and ends it with exactly one terminal."""

    __slots__ = (
        "_clock",
        "_done",
        "_ended",
        "_json_parts",
        "_log",
        "_on_end",
        "_on_suspend",
        "children",
        "fence",
        "finalized",
        "journal",
        "lost",
        "replay",
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
        fence: Fence,
        *,
        door: SpawnDoor | None = None,
        budget: Budget | None = None,
        depth: int = 0,
        journal: Journal | None = None,
        on_suspend: Callable[[Runner], Awaitable[None]] | None = None,
    ) -> None:
        """With ``door`` the run may spawn children, within ``budget`` (its agent's limits
        capped by its parent's grant), ``depth`` levels below its root. With ``journal``
        the run is being resumed or taken up again after a person answered: its earlier
        attempts' events. ``on_suspend`` hands the run back when it waits for a person."""
        self.run = run
        self.spec = spec
        self.state: RunState = replace(run.state)
        """Changed in place as the run emits (``projection.apply``): its own copy, not the
        run's, which shows what was committed."""
        self.token = CancelToken()
        self.task: asyncio.Task[None] | None = None
        self._done: asyncio.Event | None = None
        self._ended = False
        self.finalized = False
        self.fence = fence
        """The claim this process holds on the run; every write for it names this."""
        self.lost = False
        """True once another process took the run over: nothing more is written for it."""
        self.journal = journal
        if journal is not None:  # claimed again: it runs (its row may still say pending)
            self.state.status = RunStatus.RUNNING
        self.replay: Replay | None = None
        if journal is not None and spec.resume and spec.details.get("kind") != "model":
            # a function agent runs again from the top; a model agent reads its rounds
            self.replay = Replay(journal)
        self._log = event_log
        self._on_end = on_end
        self._on_suspend = on_suspend
        self._clock = clock
        self._json_parts = (ids_json(run.id, run.session_id), parent_json(run.parent_run_id))
        """What every event of the run has in its JSON, encoded once."""
        self.children: ChildSet | None = None
        if door is not None:
            limits = effective_limits(spec.spawn, door.settings)
            self.children = ChildSet(self, door, limits, budget or spec.budget, depth)

    @property
    def done(self) -> asyncio.Event:
        """Set once the run has ended here. Made when first asked for: a run waiting for
        hours holds none (an event's queue of waiters outweighed the runner itself)."""
        if self._done is None:
            self._done = asyncio.Event()
            if self._ended:
                self._done.set()
        return self._done

    def _set_done(self) -> None:
        self._ended = True
        if self._done is not None:
            self._done.set()

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        """Append an event to this run's stream; after the run's end nothing more is taken.

        ``data`` is checked and copied here (``InvalidPayload`` when it cannot be stored),
        so nothing the caller does to it afterwards changes the event.
        """
        if self.finalized:
            raise RunCancelled(self.token.by or "engine", self.token.reason)
        if self.replay is not None and self.replay.replaying and type not in _NOT_REPLAYED:
            checked = check(data, self._log.limits, what=f"the data of a {type} event")
            self.replay.emitted(type, checked)  # in the log already: not written again
            return
        self._append(type, data)
        await self._log.backpressure()

    async def flush(self) -> None:
        """Return once everything this run emitted so far is committed."""
        await self._log.flush(self.run.id)

    def _append(self, type: str, data: dict[str, Any]) -> None:
        r = self.run
        data, encoded = check_encoded(data, self._log.limits, what=f"the data of a {type} event")
        parts = self._json_parts
        seq = self.state.last_seq + 1
        ts = self._clock()
        # encoded now, while its data's JSON is at hand: every stream of the run sends it
        event = Event(
            seq,
            r.id,
            r.session_id,
            type,
            data,
            ts=ts,
            parent_run_id=r.parent_run_id,
            _json=event_json(seq, parts[0], type, ts, encoded, parts[1]),
            _data_json=encoded,
        )
        apply(self.state, event)
        self._log.append(event, self.state, self.fence)

    async def finish(self, type: str, data: dict[str, Any]) -> bool:
        """Write the terminal event, once; False if the run had already ended."""
        if self.finalized:
            return False
        self.finalized = True
        if self.children is not None:
            self.children.abandon()  # only stopped-outright runs still have live children
        try:
            self._append(type, data)
        except InvalidPayload as exc:  # an output past the limits fails the run instead
            self._append(ev.RUN_FAILED, {"error": exc.message})
        try:
            await self._log.flush(self.run.id)
        finally:  # even when the flush is interrupted by shutdown, which flushes last
            self._set_done()
            self._on_end(self)
        return True

    async def suspend(self) -> None:
        """The run waits for a person: once its ``run.waiting`` is committed, hand it back
        (it is held by no process while it waits) and forget it here."""
        if self.finalized:
            return
        self.finalized = True
        if self.children is not None:
            self.children.abandon()  # they go on; the run finds them again when taken up
        try:
            await self._log.flush(self.run.id)
            if self._on_suspend is not None and not self.lost:
                await self._on_suspend(self)
        finally:
            self._set_done()
            self._on_end(self)

    def lose(self, *, quietly: bool = False) -> None:
        """Another process ended or took over the run (or its claim failed, or its events
        were refused): stop it here, writing nothing more."""
        if self.lost:
            return
        self.lost = True
        if not quietly:
            log.warning("run %s was ended or taken over elsewhere; stopping it here", self.run.id)
        if not self.finalized:
            self.finalized = True
            if self.task is not None:
                self.task.cancel()
            if self.children is not None:
                self.children.abandon()
            self._set_done()
            self._on_end(self)

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
            history=SessionHistory(
                self._log.store, r.session_id, r.id, self._clock, self.fence, self.flush
            ),
            spawner=children,
            budget=children.budget if children is not None else self.spec.budget,
            parent_run_id=r.parent_run_id,
            depth=children.depth if children is not None else 0,
            journal=self.journal,
            replay=self.replay,
            flush=self.flush,
            waits=self._waits(),
            mailbox=StoreMailbox(self._log.store, r.id),
        )
        type: str
        data: dict[str, Any]
        try:
            self.token.raise_if_requested()
            if self.journal is None:
                await self.emit(ev.RUN_STARTED, {"agent": r.agent})
            else:
                if _answered(self.journal):  # taken up again: say so, as a resume does
                    after = self.journal.after_seq
                    data = {"attempt": r.attempt, "after_seq": after, "cause": "input"}
                    await self.emit(ev.RUN_RESUMED, data)
                if children is not None:
                    await children.restore(self.journal.events, replay=self.replay is not None)
            output = await self.spec.body(context, self.spec.parse_input(r.input))
            if self.replay is not None:
                self.replay.finish()
            output = check(output, self._log.limits, what="the agent's output")
        except RunSuspended:
            if not self.token.requested:
                await self.suspend()
                return
            type, data = (
                ev.RUN_CANCELLED,
                cancelled_data(self.token.by, self.token.reason, forced=False),
            )
        except RunCancelled as exc:
            type, data = ev.RUN_CANCELLED, cancelled_data(exc.by, exc.reason, forced=False)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if self.token.requested:
                type = ev.RUN_CANCELLED
                data = cancelled_data(self.token.by, self.token.reason, forced=True)
            else:
                type, data = ev.RUN_INTERRUPTED, {"error": "the server shut down"}
        except Exception as exc:
            log.debug("run %s failed: %s", r.id, _describe(exc))  # its traceback: in the event
            type, data = ev.RUN_FAILED, {"error": _describe(exc), "traceback": _traceback(exc)}
        else:
            type, data = ev.RUN_COMPLETED, {"output": output}
        try:
            if children is not None:
                await children.settle(_ENDINGS[type])
        finally:
            await self.finish(type, data)

    def _waits(self) -> Waits | None:
        """What the run may ask a person: a model agent always; a function agent only when
        it can be taken up again from the top (``resume=True``)."""
        if not (self.spec.resume or self.spec.details.get("kind") == "model"):
            return None
        past = None if self.journal is None else list(self.journal.events)
        return Waits(past, self.spec.input_policy, self._clock)


_NOT_REPLAYED = frozenset({ev.CHILD_STARTED, ev.CHILD_COMPLETED, ev.RUN_WAITING, ev.RUN_RESUMED})
"""Written for the run by its children's bookkeeping, a wait (found by call id) or its
taking up again, never matched on replay."""


def _answered(journal: Journal) -> bool:
    """Whether a run is taken up again because a person answered (not after a crash)."""
    return bool(journal.events) and journal.events[-1].type == ev.INPUT_RECEIVED


_ENDINGS = {
    ev.RUN_COMPLETED: "completed",
    ev.RUN_FAILED: "failed",
    ev.RUN_CANCELLED: "was cancelled",
    ev.RUN_INTERRUPTED: "was interrupted",
}


def next_event(run: Run, type: str, data: dict[str, Any], ts: float) -> Event:
    """The next event of a stored run's stream, written for it from outside its runner (an
    end, a resume)."""
    seq = run.state.last_seq + 1
    return Event(seq, run.id, run.session_id, type, data, ts=ts, parent_run_id=run.parent_run_id)


def cancelled_data(by: str, reason: str | None, *, forced: bool) -> dict[str, Any]:
    error = f"cancelled by {by}" + (f": {reason}" if reason else "")
    return {"by": by, "reason": reason, "forced": forced, "error": error}


_MAX_ERROR = 4_000
_MAX_TRACEBACK = 32_000


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidPayload):
        return exc.message[:_MAX_ERROR]
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:_MAX_ERROR]


def _traceback(exc: BaseException) -> str:
    """The traceback as text, its end kept when it is long (the end says where)."""
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= _MAX_TRACEBACK else "...\n" + text[-_MAX_TRACEBACK:]
