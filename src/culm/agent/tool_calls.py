"""Running the tool calls of one round: concurrently, each bracketed by its events.

Every call gets ``tool.started`` and then ``tool.completed`` or ``tool.failed``. A failure
(unknown tool, invalid arguments, an exception, a timeout) becomes an error result that
the model reads in the next round; it never ends the run. Cancellation does.

On a resumed run a call whose end is in the log is not made again: its recorded result is
what the model reads. A call that had started when the process died is made again only if
its tool is idempotent; otherwise the model is told it may or may not have taken effect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from culm import events as ev
from culm.agent.context import TOOL_CALL_KEY, RunContext
from culm.agent.tools import Tool, ToolArgumentsError, result_data, result_text
from culm.agent.waiting import APPROVAL, QUESTION, refusal
from culm.errors import CulmError, InvalidPayload, RunCancelled
from culm.events import Event
from culm.llm.base import ChatMessage, ToolCall

log = logging.getLogger("culm.tools")

_SHOWN_TEXT = 16_384
"""Characters of unrecordable arguments, or of an error, an event carries."""
_INTERRUPTED = (
    "the call was interrupted by a restart of the server; it may or may not have taken "
    "effect. Check before calling it again."
)


async def run_tool_calls(
    run: RunContext,
    tools: Mapping[str, Tool],
    calls: Sequence[ToolCall],
    timeout: float,
    round: int = 0,
    recorded: Mapping[str, Event] | None = None,
    approve: frozenset[str] = frozenset(),
) -> list[ChatMessage]:
    """Run ``calls`` at once; their ``tool`` messages, in the order of ``calls``.

    ``timeout`` is the per-call limit in seconds for tools that set none of their own.
    ``recorded`` holds, on a resumed run, the last logged event of each call id of this
    ``round``. A call of a tool in ``approve`` (or made with ``approval=True``) and a
    question (``ask_user``) wait for a person: the other calls are made first, then the
    run stops (``RunSuspended``) until the first unanswered one is answered, one at a time.
    """
    past = recorded or {}
    unanswered = [c for c in calls if _needs_person(tools, c, approve) and _open(past.get(c.id))]
    ready = [(i, c) for i, c in enumerate(calls) if c not in unanswered]

    async def all_calls() -> list[ChatMessage]:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    _call(run, tools, c, timeout, f"{run.run_id}:{round}:{i}", past.get(c.id))
                )
                for i, c in ready
            ]
        return [task.result() for task in tasks]

    try:
        results = await run.until_cancelled(all_calls())
    except BaseExceptionGroup as group:  # a call met cancellation at one of its safe points
        run.cancel_token.raise_if_requested()
        raise group.exceptions[0] from None
    if unanswered:
        await _ask_person(run, tools, unanswered[0])
    return results


def _needs_person(tools: Mapping[str, Tool], call: ToolCall, approve: frozenset[str]) -> bool:
    tool = tools.get(call.name)
    if tool is None:
        return False
    return tool.asks or tool.approval or call.name in approve


def _open(recorded: Event | None) -> bool:
    """Whether a call that needs a person has no answer in the log yet."""
    return recorded is None or recorded.type == ev.RUN_WAITING


async def _ask_person(run: RunContext, tools: Mapping[str, Tool], call: ToolCall) -> None:
    if run.waits is None:
        raise CulmError("this run cannot wait for a person: it was not started by an engine")
    tool = tools[call.name]
    if tool.asks:
        question = _shown(call.arguments)
        if isinstance(question, dict):
            question = question.get("question", question)
        fields: dict[str, Any] = {"question": question, "schema": {"type": "string"}}
        data = run.waits.request(QUESTION, call.id, {"tool": call.name, **fields})
    else:
        fields = {"tool": call.name, "arguments": _shown(call.arguments)}
        data = run.waits.request(APPROVAL, call.id, fields)
    await run.wait_for_person(data)


async def _call(
    run: RunContext,
    tools: Mapping[str, Tool],
    call: ToolCall,
    default_timeout: float,
    key: str,
    recorded: Event | None,
) -> ChatMessage:
    TOOL_CALL_KEY.set(key)  # this task's own context: concurrent calls each see theirs
    about = {"name": call.name, "call_id": call.id}
    tool = tools.get(call.name)
    if recorded is not None and recorded.type == ev.INPUT_RECEIVED:  # a person answered
        answer = recorded.data
        if tool is not None and tool.asks:
            await run.emit(ev.TOOL_COMPLETED, {**about, "result": answer.get("answer")})
            return _message(call, result_text(answer.get("answer")))
        if not answer.get("approve"):
            error = refusal(answer)
            await run.emit(ev.TOOL_FAILED, {**about, "error": error, "refused": True})
            return _message(call, f"Error: {error}")
        edited = answer.get("arguments")
        if isinstance(edited, dict):
            call = ToolCall(call.id, call.name, json.dumps(edited))
        recorded = None  # approved: made now, as a new call
    if recorded is not None and recorded.type == ev.TOOL_COMPLETED:
        return _message(call, result_text(recorded.data.get("result")))
    if recorded is not None and recorded.type == ev.TOOL_FAILED:
        return _message(call, f"Error: {recorded.data.get('error')}")
    unstorable: str | None = None
    if recorded is not None:  # started before the crash, never finished
        if tool is None or not tool.idempotent:
            error = _INTERRUPTED
            await run.emit(ev.TOOL_FAILED, {**about, "error": error})
            return _message(call, f"Error: {error}")
    else:
        try:
            await run.emit(ev.TOOL_STARTED, {**about, "arguments": _shown(call.arguments)})
        except InvalidPayload as exc:  # arguments the log cannot hold: shown as text, not run
            unstorable = exc.message
            shown = call.arguments[:_SHOWN_TEXT]
            await run.emit(ev.TOOL_STARTED, {**about, "arguments": shown, "truncated": True})
        if tool is None or not tool.idempotent:
            # durable before the tool runs: a resumed run then knows the call may have
            # happened (an idempotent tool is simply called again, so it need not wait)
            await run.flush()
    deadline: asyncio.Timeout | None = None
    limit = (tool.timeout if tool is not None else None) or default_timeout
    try:
        if unstorable is not None:
            raise ToolArgumentsError(f"the arguments cannot be recorded: {unstorable}")
        if tool is None:
            known = ", ".join(sorted(tools)) or "none"
            raise ToolArgumentsError(f"there is no tool named {call.name!r} (tools: {known})")
        arguments = tool.validate(call.arguments)
        async with asyncio.timeout(limit) as deadline:
            value = await tool.invoke(arguments, run)
    except RunCancelled:
        raise
    except ToolArgumentsError as exc:
        error = str(exc)
    except Exception as exc:
        if deadline is not None and deadline.expired():
            error = f"{call.name} did not finish within {limit:g}s"
        else:
            log.info("tool %s failed in run %s", call.name, run.run_id, exc_info=True)
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        try:
            await run.emit(ev.TOOL_COMPLETED, {**about, "result": result_data(value)})
            return _message(call, result_text(value))
        except InvalidPayload as exc:
            error = f"the result cannot be recorded: {exc.message}"
    await run.emit(ev.TOOL_FAILED, {**about, "error": error[:_SHOWN_TEXT]})
    return _message(call, f"Error: {error}")


def _message(call: ToolCall, content: str) -> ChatMessage:
    return {"role": "tool", "tool_call_id": call.id, "content": content}


def _shown(arguments: str) -> Any:
    """The arguments as data when they are JSON, else the text the model wrote."""
    try:
        return json.loads(arguments)
    except (json.JSONDecodeError, RecursionError):
        return arguments
