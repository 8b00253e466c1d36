"""People in the loop, for the clients: what waits for a person, approving or refusing a
tool call, answering a question, and sending a message to a running model agent."""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

from culm.client.errors import ConflictError
from culm.client.schedules import Caller, _blocking
from culm.client.types import RunInfo


class SentMessageInfo(TypedDict):
    """A message sent to a run, as ``POST /v1/runs/{id}/messages`` answers."""

    id: int
    run_id: str
    content: str
    created_at: str


class _Caller(Caller, Protocol):
    async def get_run(self, run_id: str) -> RunInfo: ...


class PeopleCalls:
    """Answering runs that wait for a person, and steering running ones."""

    async def approve(
        self: _Caller,
        run_id: str,
        *,
        approve: bool = True,
        reason: str | None = None,
        arguments: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> RunInfo:
        """Approve (or with ``approve=False`` refuse, giving ``reason``) the tool call the
        run waits on (``call_id``: the one it waits on now), with edited ``arguments`` if
        given. ``ConflictError`` (``not_waiting``) when it waits for no approval."""
        call_id = call_id or await _waiting_call(self, run_id)
        body: dict[str, Any] = {"call_id": call_id, "approve": approve}
        if reason is not None:
            body["reason"] = reason
        if arguments is not None:
            body["arguments"] = arguments
        result: RunInfo = await self._call("POST", f"/v1/runs/{run_id}/input", json=body)
        return result

    async def answer(
        self: _Caller, run_id: str, answer: Any, *, call_id: str | None = None
    ) -> RunInfo:
        """Answer the question the run waits on; ``ValidationError`` when the answer does
        not fit its schema (the run keeps waiting)."""
        call_id = call_id or await _waiting_call(self, run_id)
        body = {"call_id": call_id, "answer": answer}
        result: RunInfo = await self._call("POST", f"/v1/runs/{run_id}/input", json=body)
        return result

    async def send_message(self: _Caller, run_id: str, content: str) -> SentMessageInfo:
        """Send a user message to a model agent's active run: it is taken in at its next
        round (``message.injected``)."""
        body = {"content": content}
        result: SentMessageInfo = await self._call("POST", f"/v1/runs/{run_id}/messages", json=body)
        return result


async def _waiting_call(client: _Caller, run_id: str) -> str:
    run = await client.get_run(run_id)
    waiting = run.get("waiting")
    if not waiting:
        message = f"run {run_id} is not waiting for input (it is {run['status']})"
        raise ConflictError(409, "not_waiting", message, {"code": "not_waiting"})
    return str(waiting["call_id"])


class BlockingPeopleCalls:
    """``PeopleCalls`` for the blocking ``Client``: same arguments, same results."""

    approve = _blocking(PeopleCalls.approve)
    answer = _blocking(PeopleCalls.answer)
    send_message = _blocking(PeopleCalls.send_message)
