"""The agent loop: rounds of one model call and the tool calls it asked for.

Each round emits ``round.started``, ``message.delta`` as text streams (each carrying its
round and attempt), ``message.completed``, ``budget.updated``, the tool events, then
``round.completed``, and adds the assistant message and the tool results to the session's
history together (so a history never holds a tool call without its result). Every emit is
a safe point; the model call and the tool calls are also abandoned at once when the run is
cancelled.

A resumed run (its process died) goes on from its log: the rounds the history holds are
done; a round whose answer is recorded is not asked again, only its missing tool results
are made; a round cut off mid-answer is asked again, announced by ``round.restarted``
(clients drop the text streamed after ``discard_after_seq``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    Future,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
)

from culm import events as ev
from culm.agent.budget import TokenBudget
from culm.agent.context import RunContext
from culm.agent.inbox import Inbox, user_message
from culm.agent.journal import ROUND_RESTARTED, RecordedRound, rounds
from culm.agent.tool_calls import run_tool_calls
from culm.agent.tools import Tool
from culm.llm.base import (
    ChatMessage,
    Connection,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCall,
    Usage,
)
from culm.llm.errors import ModelError, TransientModelError
from culm.llm.retry import RetryPolicy

log = logging.getLogger("culm.agent")


class StopReason(enum.StrEnum):
    """Why a model agent's run ended; carried in its output."""

    ANSWERED = "answered"
    """The model answered without asking for tools."""
    MAX_ROUNDS = "max_rounds"
    """The round limit was reached; the model answered in one last round without tools."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """The next call would have gone past the token budget, so it was not made."""


@dataclass(slots=True, frozen=True)
class LoopSettings:
    """What shapes the rounds of one agent."""

    instructions: str
    tools: Mapping[str, Tool]
    max_rounds: int
    token_budget: int | None
    tool_timeout: float
    tool_choice: str
    retry: RetryPolicy
    approve: frozenset[str] = frozenset()
    """Tools whose calls wait for a person's approval."""


@dataclass(slots=True, frozen=True)
class Outcome:
    """How the loop ended."""

    text: str
    stop_reason: StopReason
    rounds: int
    usage: Usage

    def to_output(self) -> dict[str, Any]:
        """The run's output."""
        return {
            "text": self.text,
            "stop_reason": self.stop_reason.value,
            "rounds": self.rounds,
            "usage": self.usage.to_dict(),
        }


async def run_rounds(
    run: RunContext,
    settings: LoopSettings,
    model: Connection,
    messages: list[ChatMessage],
    written: int = 0,
) -> Outcome:
    """Run rounds on ``messages`` (the conversation so far) until the model answers or a
    limit stops it; ``messages`` grows with what each round adds. On a resumed run,
    ``written`` is how many of the history's messages this run's rounds already added."""
    budget = TokenBudget(settings.token_budget, run.children_tokens)
    tools = [tool.spec for tool in settings.tools.values()]
    system = [{"role": "system", "content": settings.instructions}] if settings.instructions else []
    text = ""
    number = 0
    cut: RecordedRound | None = None  # the round a crash cut off, to finish first
    inbox = Inbox(run)
    if run.journal is not None:
        before = len(system) + len(messages) - written  # sent ahead of its own rounds
        number, text, cut, ended = await _resume(run, settings, budget, before, written, inbox)
        if ended is not None:
            return Outcome(text, ended, number, budget.used)
    while True:
        final = number >= settings.max_rounds
        sent = [*system, *messages]
        prompt = budget.next_prompt(sent, tools)
        response: ModelResponse | None = None
        injected: list[ChatMessage] = []
        if cut is None:
            if not budget.allows(prompt):
                return Outcome(text, StopReason.BUDGET_EXHAUSTED, number, budget.used)
            number += 1
            await run.emit(ev.ROUND_STARTED, {"round": number})
            injected = await inbox.take(number)
        else:
            injected = [user_message(e) for e in cut.injected]
            number = cut.number
            final = number > settings.max_rounds
            response = _recorded_answer(cut)
            if response is None:  # cut off mid-answer: asked again, its text void
                restarted = {"round": number, "attempt": run.attempt}
                restarted["discard_after_seq"] = cut.started_seq
                await run.emit(ROUND_RESTARTED, restarted)
            elif not cut.usage_recorded:
                budget.record(response.usage, len(sent) + len(injected))
                await _report_usage(run, budget)
            else:
                budget.seen(response.usage, len(sent) + len(injected))
        if injected:
            sent = [*sent, *injected]
            prompt = budget.next_prompt(sent, tools)
        if response is None:
            choice = "none" if final else settings.tool_choice
            request = ModelRequest(sent, tools, choice, budget.completion_cap(prompt))
            response = await call_model(run, model, request, settings.retry, number)
            budget.record(response.usage, len(sent))
            await run.emit(ev.MESSAGE_COMPLETED, _completed(response))
            await _report_usage(run, budget)
        calls = () if final else response.tool_calls  # a last round's calls are not run
        added = [*injected, ModelResponse(response.text, calls).to_message()]
        if calls:
            recorded = cut.tools if cut is not None else None
            added += await run_tool_calls(
                run,
                settings.tools,
                calls,
                settings.tool_timeout,
                number,
                recorded,
                settings.approve,
            )
        cut = None
        await run.history.append(added)
        messages.extend(added)
        await inbox.taken()
        await run.emit(ev.ROUND_COMPLETED, {"round": number})
        text = response.text
        if final:
            return Outcome(text, StopReason.MAX_ROUNDS, number, budget.used)
        if not calls:
            return Outcome(text, StopReason.ANSWERED, number, budget.used)


async def _report_usage(run: RunContext, budget: TokenBudget) -> None:
    await run.emit(ev.BUDGET_UPDATED, {"usage": budget.used.to_dict(), "budget_left": budget.left})


async def _resume(
    run: RunContext,
    settings: LoopSettings,
    budget: TokenBudget,
    before: int,
    written: int,
    inbox: Inbox,
) -> tuple[int, str, RecordedRound | None, StopReason | None]:
    """Where a resumed run goes on: the rounds done (those the history holds), the last
    answer's text, the round a crash cut off (if any), and how the loop ended when it had
    ended already (its terminal event was what the crash cut off). The budget is left as
    the last done round left it: its usage, and the call its next estimate starts from
    (made with the ``before`` messages sent ahead of the run's rounds, and theirs)."""
    assert run.journal is not None
    recorded = rounds(run.journal)
    if recorded.usage is not None:
        budget.used = Usage(
            int(recorded.usage.get("prompt_tokens", 0)),
            int(recorded.usage.get("completion_tokens", 0)),
        )
    done, text, left = 0, "", written
    for past in recorded.rounds:
        inbox.seen.update(int(e.data.get("id", 0)) for e in past.injected)
    for past in recorded.rounds:
        answer = _recorded_answer(past)
        if answer is None:
            return done, text, past, None
        final = past.number > settings.max_rounds
        calls = () if final else answer.tool_calls
        added = len(past.injected) + 1 + len(calls)
        if left < added:  # its messages are not in the history: finish it
            return done, text, past, None
        budget.seen(answer.usage, before + written - left + len(past.injected))
        left -= added
        done, text = past.number, answer.text
        if not past.completed:
            await run.emit(ev.ROUND_COMPLETED, {"round": past.number})
        if final:
            return done, text, None, StopReason.MAX_ROUNDS
        if not calls:
            return done, text, None, StopReason.ANSWERED
    return done, text, None, None


def _recorded_answer(past: RecordedRound) -> ModelResponse | None:
    if past.answer is None:
        return None
    calls = tuple(
        ToolCall(str(c["id"]), str(c["name"]), str(c["arguments"]))
        for c in past.answer.get("tool_calls") or ()
    )
    usage = past.answer.get("usage") or {}
    return ModelResponse(
        str(past.answer.get("text", "")),
        calls,
        Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
    )


async def call_model(
    run: RunContext,
    model: Connection,
    request: ModelRequest,
    retry: RetryPolicy,
    round: int = 0,
) -> ModelResponse:
    """One model call, streamed as ``message.delta`` events (of ``round``), retried when it
    fails transiently; other failures raise ``ModelError`` at once.

    tenacity runs the attempts: ``retry.attempts`` retries, each after ``retry.delay`` (the
    provider's ``Retry-After`` first), slept with ``run.sleep`` so a cancel wakes it."""

    def wait(state: RetryCallState) -> float:
        failed = _transient(state)
        return retry.delay(state.attempt_number, failed.retry_after)

    def announce(state: RetryCallState) -> None:
        failures = state.attempt_number
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "run %s: %s; retry %d of %d in %.2fs",
            run.run_id,
            _transient(state).message,
            failures,
            retry.attempts,
            delay,
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientModelError),
        stop=stop_after_attempt(retry.attempts + 1),
        wait=wait,
        sleep=run.sleep,
        before_sleep=announce,
    )
    try:
        async for trying in retrying:
            with trying:
                attempt = _Attempt(round)
                try:
                    return await run.until_cancelled(attempt.stream(run, model, request))
                except TransientModelError:
                    # a retry follows: what streamed so far is void, it starts over
                    if attempt.streamed and trying.retry_state.attempt_number <= retry.attempts:
                        reset = {**attempt.where(run), "text": "", "reset": True}
                        await run.emit(ev.MESSAGE_DELTA, reset)
                    raise
    except RetryError as exc:
        message = _transient(exc.last_attempt).message
        raise TransientModelError(f"{message} (gave up after {retry.attempts} retries)") from None
    raise AssertionError("tenacity ended without an outcome")  # pragma: no cover


def _transient(state: RetryCallState | Future) -> TransientModelError:
    """The transient failure of the attempt that just ended."""
    future = state.outcome if isinstance(state, RetryCallState) else state
    assert future is not None
    failed = future.exception()
    assert isinstance(failed, TransientModelError)
    return failed


class _Attempt:
    __slots__ = ("round", "streamed")

    def __init__(self, round: int) -> None:
        self.round = round
        self.streamed = False

    def where(self, run: RunContext) -> dict[str, int]:
        return {"round": self.round, "attempt": run.attempt}

    async def stream(
        self, run: RunContext, model: Connection, request: ModelRequest
    ) -> ModelResponse:
        response: ModelResponse | None = None
        # aclosing: however this ends (cancelled mid-stream included), the provider's
        # generator is closed, and with it the HTTP response or the local generation
        async with aclosing(model.stream(request)) as items:
            async for item in items:
                if isinstance(item, TextDelta):
                    self.streamed = True
                    await run.emit(ev.MESSAGE_DELTA, {"text": item.text, **self.where(run)})
                else:
                    response = item
        if response is None:
            raise ModelError("the model's stream ended without a response")
        return response


def _completed(response: ModelResponse) -> dict[str, Any]:
    data: dict[str, Any] = {"text": response.text, "usage": response.usage.to_dict()}
    if response.tool_calls:
        data["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
        ]
    return data
