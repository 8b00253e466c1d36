"""A run's children: started through the engine's door, watched, and reported on its stream.

This is the engine side of ``culm.agent.spawn.Spawner``. Two orderings make a run tree
readable from its root's session stream alone:

- ``child.started`` is committed on the parent's stream before the child's session has any
  event, so a follower that re-reads its set of sessions at that event misses nothing.
- ``child.completed`` is written once the child's end is durable, and before the parent's
  own end: a parent never ends while a child still runs (``settle`` cancels live children
  first), so no child is ever left without an owner.

Each child is watched by a task: it waits for the child's end and, when limits are set,
cancels a child that runs too long or goes quiet for too long (reason ``timeout``).

``child.started`` also records what a resumed parent needs to start no child twice: the
child's input and who asked (to create one announced but not yet created) and the key of
the tool call that spawned it (so that call, made again, gets the same child back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from culm import events as ev
from culm.agent.app import App
from culm.agent.budget import Budget
from culm.agent.context import TOOL_CALL_KEY
from culm.agent.journal import NonDeterministicAgent
from culm.agent.spawn import Child, ChildResult, SpawnLimits
from culm.config import Settings
from culm.errors import CulmError, InvalidPayload, NotFound, RunCancelled, SpawnRefused
from culm.events import Event
from culm.ids import new_id
from culm.models import Run, RunStatus, Session, Trigger
from culm.runtime.limits import overdue_why, watchdog_wait
from culm.runtime.summary import summarize

if TYPE_CHECKING:
    from culm.runtime.runner import Runner

log = logging.getLogger("culm.spawn")


class SpawnDoor(Protocol):
    """What children need of the engine (``culm.Engine`` is one)."""

    app: App
    settings: Settings
    clock: Callable[[], float]

    @property
    def closing(self) -> bool: ...

    async def create_session(
        self, *, tenant: str = "default", metadata: Any = None, parent_id: str | None = None
    ) -> Session: ...

    async def start_run(
        self,
        agent: str,
        input: Any = None,
        *,
        session_id: str | None = None,
        tenant: str = "default",
        trigger: Trigger = Trigger.PYTHON,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        by: str = "user",
        grant: Budget | None = None,
        depth: int = 0,
    ) -> Run: ...

    async def cancel(
        self, run_id: str, *, by: str = "user", reason: str | None = None, tenant: str | None = None
    ) -> Run: ...

    async def wait(
        self, run_id: str, timeout: float | None = None, tenant: str | None = None
    ) -> Run: ...

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run: ...

    def local_runner(self, run_id: str) -> Runner | None: ...

    def background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...


@dataclass(slots=True)
class _Record:
    child: Child
    outcome: asyncio.Future[ChildResult]
    task: asyncio.Task[None] | None = None
    started_at: float = 0.0
    timed_out: str | None = field(default=None)


class ChildSet:
    """The children of one run; implements ``Spawner`` for its ``RunContext``."""

    def __init__(
        self, runner: Runner, door: SpawnDoor, limits: SpawnLimits, budget: Budget, depth: int
    ) -> None:
        self._runner = runner
        self._door = door
        self.limits = limits
        self.budget = budget
        self.depth = depth
        self._records: dict[str, _Record] = {}
        self._settling = False
        self._replayed: list[str] = []
        """Children a resumed run had started, handed out again by its replayed spawns."""
        self._by_call: dict[str, list[str]] = {}
        """Children a resumed run had started inside tool calls, by the call's key."""

    async def restore(self, events: Sequence[Event], *, replay: bool) -> None:
        """On a resumed run: take back the children its log says it started. Those whose
        end is recorded keep their result; the others are watched again (they ran on while
        the parent's process was down, or are still running); one announced but never
        created is created now. None is started twice. With ``replay`` the agent's own
        spawns, run again from the top, get these children back in order instead of new
        ones; a spawn made again by a tool call gets the children that call started."""
        reported = {e.data.get("run_id") for e in events if e.type == ev.CHILD_COMPLETED}
        loop = asyncio.get_running_loop()
        for event in events:
            if event.type != ev.CHILD_STARTED:
                continue
            data = event.data
            child = Child(str(data["run_id"]), str(data["session_id"]), str(data["agent"]))
            record = _Record(child, loop.create_future(), started_at=event.ts)
            self._records[child.run_id] = record
            if replay:
                self._replayed.append(child.run_id)
            if isinstance(data.get("call"), str):
                self._by_call.setdefault(data["call"], []).append(child.run_id)
            try:
                run = await self._door.get_run(child.run_id)
            except NotFound:  # announced, but the crash came before it was created
                if "input" not in data:  # announced without what it takes to create it
                    why = "it was never started: the parent's process died first"
                    await self._report(record, RunStatus.FAILED, None, why, None)
                    continue
                grant = Budget(data["budget"].get("tokens"), data["budget"].get("rounds"))
                by = str(data.get("by") or f"run:{self._runner.run.id}")
                with contextlib.suppress(Exception):  # reported failed, saying why
                    await self._start(record, data["input"], grant, by)
                continue
            if child.run_id in reported:
                state = run.state
                result = _result(record, state.status, state.output, state.error, state.tree_usage)
                record.outcome.set_result(result)
            else:
                record.task = self._door.background(self._watch(record))

    # Spawner

    async def spawn(
        self, agent: str, input: Any, budget: Budget, *, by: str | None = None
    ) -> Child:
        """Start a child (see ``Spawner.spawn``); ``by`` is who asked, when not the run."""
        parent = self._runner.run
        if self._replayed:  # a resumed agent spawning again what it spawned before
            again = self._records[self._replayed.pop(0)].child
            if again.agent != agent:
                raise NonDeterministicAgent(
                    f"non-deterministic agent: on resume it spawned {agent!r} where its log "
                    f"has a child of {again.agent!r} ({again.run_id})"
                )
            return again
        # inside a tool call of this run's own (a key of another run's is not)
        call = TOOL_CALL_KEY.get()
        call = call if call is not None and call.startswith(f"{parent.id}:") else None
        earlier = self._by_call.get(call or "")
        if earlier and self._records[earlier[0]].child.agent == agent:
            return self._records[earlier.pop(0)].child  # the call, made again after a crash
        spec = self._door.app.get(agent)
        allowed = self.limits.agents
        if allowed is not None and agent not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise SpawnRefused(f"{parent.agent} may not start {agent!r} (it may start: {names})")
        value = spec.validate_input(input)
        grant = self._check(budget)
        run_id = new_id("run")
        loop = asyncio.get_running_loop()
        placeholder = Child(run_id, "", agent)
        record = _Record(placeholder, loop.create_future(), started_at=self._door.clock())
        self._records[run_id] = record  # counted from now: concurrent spawns see it
        try:
            session = await self._door.create_session(
                tenant=parent.tenant, parent_id=parent.session_id
            )
            record.child = Child(run_id, session.id, agent)
            by = by or f"run:{parent.id}"
            data = {**record.child.to_dict(), "depth": self.depth + 1, "budget": grant.to_dict()}
            if call is not None:
                data["call"] = call
            try:  # what a resumed parent needs to create it, if the process dies first
                more = {"input": value, "by": by} if self._runner.spec.resume else {}
                await self._runner.emit(ev.CHILD_STARTED, {**data, **more})
            except InvalidPayload:  # an input at the size limit: announced without it
                await self._runner.emit(ev.CHILD_STARTED, data)
            await self._runner.flush()  # committed before any event of the child's session
        except BaseException:
            del self._records[run_id]
            raise
        await self._start(record, value, grant, by)
        token = self._runner.token
        if token.requested:  # the parent was cancelled while the child was starting
            await self.cancel(run_id, f"parent run {parent.id} was cancelled", by=token.by)
        elif self._settling:  # or it ended meanwhile
            await self.cancel(run_id, f"parent run {parent.id} ended")
        return record.child

    def outcome(self, run_id: str) -> asyncio.Future[ChildResult]:
        """The child's result, once reported on this run's stream."""
        record = self._records.get(run_id)
        if record is None:
            raise NotFound(f"run {run_id} is not a child of run {self._runner.run.id}")
        return record.outcome

    async def cancel(self, run_id: str, reason: str, *, by: str | None = None) -> None:
        """Ask one of its children to stop, on behalf of ``by`` (else this run)."""
        self.outcome(run_id)  # only its own children
        with contextlib.suppress(CulmError):  # ended already, or never started
            await self._door.cancel(run_id, by=by or f"run:{self._runner.run.id}", reason=reason)

    def children(self) -> list[Child]:
        """Every child started so far, in order."""
        return [r.child for r in self._records.values()]

    def children_tokens(self) -> int:
        """Tokens its children's trees used: reported ones, and live ones so far."""
        total = 0
        for record in self._records.values():
            if record.outcome.done():
                total += _tokens(record.outcome.result().usage)
            else:
                runner = self._door.local_runner(record.child.run_id)
                if runner is not None:
                    total += _tokens(runner.state.usage)
                    if runner.children is not None:
                        total += runner.children.children_tokens()
        return total

    # for the runner and the engine

    def live(self) -> list[str]:
        """Ids of the children that have not ended (as far as this run's stream knows)."""
        return [run_id for run_id, r in self._records.items() if not r.outcome.done()]

    def last_activity(self) -> float:
        """When this run or any of its live descendants last emitted an event."""
        latest = self._runner.state.last_event_at or 0.0
        for run_id in self.live():
            runner = self._door.local_runner(run_id)
            if runner is not None and runner.children is not None:
                latest = max(latest, runner.children.last_activity())
        return latest

    async def settle(self, ending: str) -> None:
        """Before this run's own end: stop its live children and wait (bounded) until each
        child's end is on this run's stream. ``ending`` says why, for their cancel reason."""
        self._settling = True  # no more children from here (an API spawn, say)
        live = self.live()
        if live and not self._door.closing:  # at shutdown every run is being interrupted
            token = self._runner.token
            by = token.by if token.requested else f"run:{self._runner.run.id}"
            for run_id in live:
                await self.cancel(run_id, f"parent run {self._runner.run.id} {ending}", by=by)
        # their reports, also of a child still starting (which cancels itself, seeing this)
        reports = [r.outcome for r in self._records.values() if not r.outcome.done()]
        if reports:
            await asyncio.wait(reports, timeout=self._door.settings.cancel_grace + 2.0)

    def abandon(self) -> None:
        """This run ended without ``settle`` (it was stopped outright): cancel what lives."""
        if self._door.closing:
            return
        for run_id in self.live():
            reason = f"parent run {self._runner.run.id} ended"
            self._door.background(self.cancel(run_id, reason, by=self._runner.token.by or None))

    # inside

    async def _start(self, record: _Record, value: Any, grant: Budget, by: str) -> None:
        """Create the announced child's run and watch it; reported failed if it cannot be."""
        parent, child = self._runner.run, record.child
        try:
            await self._door.start_run(
                child.agent,
                value,
                session_id=child.session_id,
                tenant=parent.tenant,
                trigger=Trigger.SPAWN,
                parent_run_id=parent.id,
                run_id=child.run_id,
                by=by,
                grant=grant,
                depth=self.depth + 1,
            )
        except Exception as exc:
            await self._report(record, RunStatus.FAILED, None, f"could not start: {exc}", None)
            raise
        record.task = self._door.background(self._watch(record))

    def _check(self, wanted: Budget) -> Budget:
        """The budget to grant a new child, or ``SpawnRefused`` naming the limit."""
        parent, limits = self._runner.run, self.limits
        if self._settling or self._runner.finalized or self._runner.token.requested:
            raise SpawnRefused(f"run {parent.id} is ending and cannot start children")
        if self._door.closing:
            raise SpawnRefused("the engine is shutting down")
        if limits.max_depth is not None and self.depth + 1 > limits.max_depth:
            raise SpawnRefused(
                f"run {parent.id} is at depth {self.depth}: a child would pass the depth "
                f"limit of {limits.max_depth}"
            )
        if limits.max_live_children is not None and len(self.live()) >= limits.max_live_children:
            raise SpawnRefused(
                f"run {parent.id} has {limits.max_live_children} live children, the most it "
                "may have at once: wait for one to end"
            )
        if limits.max_children is not None and len(self._records) >= limits.max_children:
            raise SpawnRefused(
                f"run {parent.id} has started {limits.max_children} children, the most it may"
            )
        tokens = self.budget.tokens
        if tokens is not None:
            tokens -= _tokens(self._runner.state.usage) + self.children_tokens()
        rounds = self.budget.rounds
        if rounds is not None:
            rounds -= self._runner.state.round
        grant = wanted.cap(Budget(tokens, rounds))
        if grant.tokens is not None and grant.tokens <= 0:
            raise SpawnRefused(f"run {parent.id} has no token budget left for a child")
        if grant.rounds is not None and grant.rounds <= 0:
            raise SpawnRefused(f"run {parent.id} has no rounds left for a child")
        return grant

    async def _watch(self, record: _Record) -> None:
        """Wait for the child's end, cancelling it if the watchdog fires; then report it."""
        run_id = record.child.run_id
        try:
            while True:
                left = None if record.timed_out else self._until_overdue(record)
                run = await self._door.wait(run_id, left)
                if run.status.terminal:
                    break
                if record.timed_out is None and self._until_overdue(record) == 0:
                    record.timed_out = overdue_why(
                        self.limits, self._door.clock(), record.started_at
                    )
                    log.warning("run %s: %s; cancelling it", run_id, record.timed_out)
                    with contextlib.suppress(CulmError):
                        await self._door.cancel(run_id, by="watchdog", reason="timeout")
            state = run.state
            await self._report(record, state.status, state.output, state.error, state.tree_usage)
        except asyncio.CancelledError:
            if not record.outcome.done():  # the engine is closing: the parent ends too
                record.outcome.set_result(_result(record, RunStatus.INTERRUPTED, None, None, None))
            raise

    def _until_overdue(self, record: _Record) -> float | None:
        runner = self._door.local_runner(record.child.run_id)
        children = runner.children if runner is not None else None
        quiet_since = children.last_activity() if children is not None else None
        return watchdog_wait(self.limits, self._door.clock(), record.started_at, quiet_since)

    async def _report(
        self,
        record: _Record,
        status: RunStatus,
        output: Any,
        error: str | None,
        usage: dict[str, Any] | None,
    ) -> None:
        """Write ``child.completed`` on this run's stream, then hand out the result."""
        data: dict[str, Any] = {
            **record.child.to_dict(),
            "status": status.value,
            "summary": summarize(output if error is None else error),
            "error": error,
            "usage": usage,
        }
        if record.timed_out is not None:
            data["timeout"] = record.timed_out
        try:
            await self._runner.emit(ev.CHILD_COMPLETED, data)
        except RunCancelled:
            pass  # the parent was ended outright: its stream takes nothing more
        finally:
            if not record.outcome.done():
                record.outcome.set_result(_result(record, status, output, error, usage))


def _result(
    record: _Record, status: RunStatus, output: Any, error: str | None, usage: Any
) -> ChildResult:
    child = record.child
    return ChildResult(child.run_id, child.session_id, child.agent, status, output, error, usage)


def _tokens(usage: dict[str, Any] | None) -> int:
    value = (usage or {}).get("total_tokens", 0)
    return value if isinstance(value, int) else 0
