"""What an agent holds while it runs: a way to emit events, and to notice cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, NoReturn, Protocol, TypeVar, overload

from culm.agent.budget import Budget
from culm.agent.journal import STEP_COMPLETED, Journal, Replay
from culm.agent.spawn import Child, ChildResult, Spawner, WaitMode, wait_results
from culm.agent.waiting import (
    MISSING,
    QUESTION,
    Waits,
    answer_schema,
    typed_answer,
    wait_for_person,
)
from culm.errors import CulmError, InvalidPayload, RunCancelled, SpawnRefused
from culm.events import RESERVED_PREFIX

T = TypeVar("T")


class CancelToken:
    """Set once, by whoever cancels; checked by the run at its safe points.

    Plain fields and a future per waiter, not an ``asyncio.Event``: every active run holds
    a token, and an event's queue of waiters alone weighed more than the rest of it."""

    __slots__ = ("_waiters", "by", "reason", "requested")

    def __init__(self) -> None:
        self.requested = False
        """True once someone asked the run to stop."""
        self.by = ""
        self.reason: str | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def request(self, by: str, reason: str | None) -> bool:
        """Ask the run to stop; False if someone already asked (the first ask stands)."""
        if self.requested:
            return False
        self.requested = True
        self.by, self.reason = by, reason
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        return True

    def raise_if_requested(self) -> None:
        if self.requested:
            raise RunCancelled(self.by, self.reason)

    async def wait(self) -> None:
        """Return once the run is asked to stop."""
        if self.requested:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)


Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

TOOL_CALL_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "culm_tool_call_key", default=None
)
"""The idempotency key of the tool call running in this task (see ``RunContext``)."""


class History(Protocol):
    """A session's conversation, as messages in the OpenAI chat shape (``role``, ...)."""

    async def read(self) -> list[dict[str, Any]]:
        """Every message so far, oldest first."""
        ...

    async def append(self, messages: Sequence[dict[str, Any]]) -> None:
        """Add messages at the end, durably and all together."""
        ...

    async def written(self) -> int:
        """How many messages this run has added so far (what a resumed run finds)."""
        ...


class MemoryHistory:
    """A history kept in memory: for a context made outside an engine (tests, scripts)."""

    def __init__(self, messages: Sequence[dict[str, Any]] = ()) -> None:
        self.messages = list(messages)

    async def read(self) -> list[dict[str, Any]]:
        return list(self.messages)

    async def append(self, messages: Sequence[dict[str, Any]]) -> None:
        self.messages.extend(messages)

    async def written(self) -> int:
        return len(self.messages)


class RunContext:
    """The handle an agent receives: its run's identity, ``emit`` and safe points.

    Every ``emit`` and ``checkpoint`` is a safe point: when the run has been asked to stop,
    it raises ``culm.RunCancelled`` there. Catch it only to clean up, then re-raise.
    """

    __slots__ = (
        "_emit",
        "_flush",
        "_spawner",
        "agent",
        "budget",
        "cancel_token",
        "depth",
        "history",
        "journal",
        "mailbox",
        "parent_run_id",
        "replay",
        "run_id",
        "session_id",
        "tenant",
        "waits",
    )

    def __init__(
        self,
        *,
        run_id: str,
        session_id: str,
        tenant: str,
        agent: str,
        emit: Emit,
        cancel_token: CancelToken,
        history: History | None = None,
        spawner: Spawner | None = None,
        budget: Budget | None = None,
        parent_run_id: str | None = None,
        depth: int = 0,
        journal: Journal | None = None,
        replay: Replay | None = None,
        flush: Callable[[], Awaitable[None]] | None = None,
        waits: Waits | None = None,
        mailbox: Any = None,
    ) -> None:
        self.run_id = run_id
        self.session_id = session_id
        self.tenant = tenant
        self.agent = agent
        self._emit = emit
        self.cancel_token = cancel_token
        self.history: History = history if history is not None else MemoryHistory()
        """The session's conversation; model agents read it and add each round to it."""
        self._spawner = spawner
        self.budget = budget or Budget()
        """The most this run may use: its agent's limits, capped by its parent's grant."""
        self.parent_run_id = parent_run_id
        self.depth = depth
        """How far below its root run this run is (a root is at 0)."""
        self._flush = flush
        self.journal = journal
        """On a resumed run, the events of its earlier attempts; None on a first run."""
        self.replay = replay
        """On a resumed function agent that opted in, what its emits and steps are matched
        against before they take effect again."""
        self.waits = waits
        """Its questions and approvals so far; None when it cannot wait for a person."""
        self.mailbox = mailbox
        """Where the messages sent to the run wait (``culm.agent.inbox.Mailbox``)."""

    async def flush(self) -> None:
        """Return once everything this run emitted so far is durable: before a side effect
        that must never happen without a record that it was started."""
        if self._flush is not None:
            await self._flush()

    @property
    def attempt(self) -> int:
        """0 on a run's first execution; 1, 2... after each resume."""
        return 0 if self.journal is None else self.journal.attempt

    @property
    def idempotency_key(self) -> str:
        """A key that stays the same when the same piece of work is done again after a
        resume: inside a tool call, ``run id:round:call index``; elsewhere the run id.
        Pass it to external systems that deduplicate (payments, emails)."""
        return TOOL_CALL_KEY.get() or self.run_id

    async def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (sync or async) once, durably: its result is recorded
        as ``step.completed`` (it must be JSON), and when the run is resumed after its
        process died, a step whose result is recorded returns it without running again.
        A step cut off by the crash runs again: make it safe to repeat, with
        ``idempotency_key``. A safe point."""
        self.cancel_token.raise_if_requested()
        if self.replay is not None and self.replay.replaying:
            return self.replay.step(name)
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await self.until_cancelled(result)
        try:
            await self._emit(STEP_COMPLETED, {"name": name, "result": result})
        except InvalidPayload as exc:  # said of the step, not of the event it records
            raise InvalidPayload(
                f"step {name!r} returned a result that cannot be recorded (a step's result "
                f"must be JSON): {exc.message}"
            ) from exc
        return result

    async def ask(self, question: str, schema: Any = None, *, default: Any = MISSING) -> Any:
        """Ask a person and wait for the answer: the run stops here (status ``waiting``,
        event ``run.waiting``) and holds nothing while it waits; when someone answers
        (``POST /v1/runs/{id}/input``), it is taken up again from the top, its earlier
        emits and steps matched against its log (so the agent needs ``resume=True``), and
        this call returns the answer.

        ``schema``: a JSON Schema (dict) or a Python type (``int``, a pydantic model...)
        the answer must fit; an answer that does not is refused and the run keeps waiting.
        ``default``: the answer when the agent's ``input_timeout`` passes with
        ``on_input_timeout="continue"``. A safe point."""
        self.cancel_token.raise_if_requested()
        if self.waits is None:
            raise CulmError(
                "run.ask needs an agent registered with resume=True: when the answer "
                "comes, the agent runs again from the top, its emits and steps matched "
                "against its log"
            )
        call_id = self.waits.next_ask_id()
        json_schema, adapter = answer_schema(schema)
        answered = self.waits.answers.get(call_id)
        if answered is not None:
            return typed_answer(adapter, answered.get("answer"))
        fields = {"question": question, "schema": json_schema}
        await self.wait_for_person(self.waits.request(QUESTION, call_id, fields, default))

    async def wait_for_person(self, data: dict[str, Any]) -> NoReturn:
        """Write ``run.waiting`` with ``data`` and stop the run until it is answered."""
        if self.waits is None:
            raise CulmError("this run cannot wait for a person: it was not started by an engine")
        await wait_for_person(self._emit, self.waits, data)

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_token.requested

    async def emit(self, type: str, data: dict[str, Any] | None = None) -> None:
        """Append an event to this run's stream (a safe point).

        Any type but the engine's own lifecycle types (``run.*``) is allowed; user code
        should put its own types under a prefix of its own (``myapp.progress``).
        """
        if type.startswith(RESERVED_PREFIX):
            raise ValueError(f"event type {type!r} is reserved for the engine")
        self.cancel_token.raise_if_requested()
        await self._emit(type, data if data is not None else {})

    async def checkpoint(self) -> None:
        """A safe point: raise ``RunCancelled`` if the run was asked to stop.

        Also lets other tasks run, so a busy loop that checkpoints stays cancellable.
        """
        self.cancel_token.raise_if_requested()
        await asyncio.sleep(0)
        self.cancel_token.raise_if_requested()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking at once with ``RunCancelled`` if the run is asked to stop."""
        # the token's own wait under a deadline: a sleeping run holds no task but its own
        self.cancel_token.raise_if_requested()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.cancel_token.wait()
        self.cancel_token.raise_if_requested()

    async def until_cancelled(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``; if the run is asked to stop first, cancel it and raise
        ``RunCancelled``. Use it around waits that may be long (a network call, a queue)."""
        self.cancel_token.raise_if_requested()
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.cancel_token.wait())
        try:
            await asyncio.wait((work, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if work.cancelled() and self.cancel_token.requested:
            raise RunCancelled(self.cancel_token.by, self.cancel_token.reason)
        return work.result()

    # spawn

    @overload
    async def spawn(
        self,
        agent: str,
        input: Any = None,
        *,
        wait: Literal[False] = False,
        token_budget: int | None = None,
        max_rounds: int | None = None,
    ) -> Child: ...

    @overload
    async def spawn(
        self,
        agent: str,
        input: Any = None,
        *,
        wait: Literal[True],
        token_budget: int | None = None,
        max_rounds: int | None = None,
    ) -> ChildResult: ...

    async def spawn(
        self,
        agent: str,
        input: Any = None,
        *,
        wait: bool = False,
        token_budget: int | None = None,
        max_rounds: int | None = None,
    ) -> Child | ChildResult:
        """Start ``agent`` as a child run on a child session; it runs concurrently.

        Returns the ``Child`` at once, or with ``wait=True`` its ``ChildResult`` once it
        has ended. Its token and round budget are at most ``token_budget`` / ``max_rounds``
        and never more than this run has left. A limit that says no raises
        ``SpawnRefused``; the child's own failure is in its result, not raised.
        """
        self.cancel_token.raise_if_requested()
        child = await self._require_spawner().spawn(agent, input, Budget(token_budget, max_rounds))
        if not wait:
            return child
        return await self.wait_for(child)

    async def wait_for(self, child: Child | str) -> ChildResult:
        """The result of one child once it has ended (a safe point)."""
        return (await self.wait_children([child]))[0]

    async def wait_children(
        self, children: Sequence[Child | str] | None = None, mode: WaitMode | str = WaitMode.ALL
    ) -> list[ChildResult]:
        """Results of ``children`` (default: every child so far), in their order, once
        ``mode`` is satisfied: ``all`` ended, the ``first`` to end (a list of one), or
        ``all_or_fail`` (all completed, or one did not and the rest were cancelled).

        A safe point: cancelling this run stops the wait (and its children stop too).
        """
        spawner = self._require_spawner()
        chosen = spawner.children() if children is None else children
        return await self.until_cancelled(wait_results(spawner, chosen, WaitMode(mode)))

    @property
    def children(self) -> list[Child]:
        """Every child this run started so far, in order."""
        return [] if self._spawner is None else self._spawner.children()

    def children_tokens(self) -> int:
        """Tokens this run's children (and theirs) have used so far."""
        return 0 if self._spawner is None else self._spawner.children_tokens()

    def _require_spawner(self) -> Spawner:
        if self._spawner is None:
            raise SpawnRefused("this run cannot spawn: it was not started by an engine")
        return self._spawner
