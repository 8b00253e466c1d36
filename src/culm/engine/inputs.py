"""The engine's calls for people in the loop: answering a run that waits (an approval, a
question), sending a message to a running model agent, and the waits that time out."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from culm import events as ev
from culm.agent.app import App
from culm.agent.waiting import APPROVAL, MISSING, QUESTION, check_answer, timed_out
from culm.bus import Bus
from culm.config import Settings
from culm.errors import Conflict, InvalidInput, NotWaiting
from culm.models import Run, RunStatus
from culm.payload import check
from culm.runtime.executor import WAITING, Executor
from culm.runtime.runner import next_event
from culm.store import Store
from culm.store.base import SentMessage

log = logging.getLogger("culm.engine")


class InputCalls:
    """Mixed into ``Engine``."""

    app: App
    settings: Settings
    store: Store
    bus: Bus
    executor: Executor
    clock: Callable[[], float]

    def _refuse_when_unhealthy(self) -> None:
        raise NotImplementedError

    def _work_queued(self) -> None:
        raise NotImplementedError

    async def answer(
        self,
        run_id: str,
        call_id: str,
        *,
        approve: bool | None = None,
        reason: str | None = None,
        arguments: dict[str, Any] | None = None,
        answer: Any = MISSING,
        by: str = "user",
        tenant: str | None = None,
    ) -> Run:
        """Answer what a waiting run asks (``call_id`` of its ``run.waiting``): approve or
        refuse a tool call (``approve``, ``reason``, edited ``arguments``), or answer a
        question (``answer``, checked against its schema). The run goes on from its log
        in whichever process takes it up; returns it as stored (``pending`` until then).

        ``NotWaiting`` when it does not wait on ``call_id`` (any more); ``InvalidInput``
        when the answer does not fit, and the run keeps waiting."""
        self._refuse_when_unhealthy()
        run = await self._waiting_run(run_id, tenant)
        waiting = run.state.waiting or {}
        if waiting.get("call_id") != call_id:
            raise NotWaiting(
                f"run {run_id} waits on call_id {waiting.get('call_id')!r}, not {call_id!r}"
            )
        data = _answer_data(waiting, approve, reason, arguments, answer)
        data = check(
            {"call_id": call_id, "kind": waiting.get("kind"), **data, "by": by},
            self.settings.payload_limits,
            what="the answer",
        )
        return await self._go_on(run_id, call_id, data)

    async def _waiting_run(self, run_id: str, tenant: str | None) -> Run:
        # its status says waiting in the very commit of its run.waiting event: whoever saw
        # the event sees the status
        run = await self.store.get_run(run_id, tenant)
        if run.status is not RunStatus.WAITING:
            raise NotWaiting(f"run {run_id} is not waiting for input (it is {run.status.value})")
        return run

    async def _go_on(self, run_id: str, call_id: str, data: dict[str, Any]) -> Run:
        now = self.clock()
        answered = await self.store.answer_run(
            run_id, call_id, lambda run: next_event(run, ev.INPUT_RECEIVED, data, now)
        )
        if answered is None:  # answered, cancelled or timed out meanwhile
            current = await self.store.get_run(run_id)
            raise NotWaiting(
                f"run {run_id} no longer waits on {call_id!r} (it is {current.status.value})"
            )
        self._take_up(answered)
        return answered

    def _take_up(self, run: Run) -> None:
        """Have the answered run taken up: here when this process executes its starts,
        else by whichever worker claims it."""
        if self.executor.executes and not self.executor.claims:
            self.executor.background(self.executor.start_next(run.session_id), run_id=run.id)
        else:
            self._work_queued()

    async def send_message(
        self, run_id: str, content: str, *, tenant: str | None = None
    ) -> SentMessage:
        """Send a user message to an active model agent's run: it takes it in at its next
        round (``message.injected``), without stopping anything. ``Conflict`` when the run
        has ended or its agent is not a model agent."""
        self._refuse_when_unhealthy()
        if not isinstance(content, str) or not content.strip():
            raise InvalidInput("a message's content must be non-empty text")
        check(content, self.settings.payload_limits, what="the message")
        run = await self.store.get_run(run_id, tenant)
        spec = self.app.agents.get(run.agent)
        if spec is None or spec.details.get("kind") != "model":
            raise Conflict(
                f"run {run_id} is of agent {run.agent!r}, which is not a model agent: "
                "only model agents take messages while they run"
            )
        if run.status.terminal:
            raise Conflict(f"run {run_id} has ended ({run.status.value}): it takes no message")
        # what a run has not taken in yet is bounded like one event: it becomes events,
        # and goes to the model in one request
        limit = self.settings.max_event_bytes
        return await self.store.send_run_message(run_id, content, self.clock(), tenant, limit)

    async def expire_waits(self) -> None:
        """End, or go on with, the waits whose ``input_timeout`` passed."""
        for run in await self.store.expired_waits(self.clock()):
            waiting = run.state.waiting or {}
            call_id = str(waiting.get("call_id"))
            goes_on = timed_out(waiting)
            if goes_on is None:
                seconds = waiting.get("timeout")
                error = f"nobody answered within {seconds}s (input_timeout)"
                await self.executor.end(run.id, WAITING, ev.RUN_FAILED, {"error": error})
                continue
            data = {"call_id": call_id, "kind": waiting.get("kind"), **goes_on, "by": "timeout"}
            with contextlib.suppress(NotWaiting):  # answered or cancelled meanwhile
                await self._go_on(run.id, call_id, data)


def _answer_data(
    waiting: dict[str, Any],
    approve: bool | None,
    reason: str | None,
    arguments: dict[str, Any] | None,
    answer: Any,
) -> dict[str, Any]:
    """The ``input.received`` data for an answer to ``waiting``, or ``InvalidInput``."""
    kind = waiting.get("kind")
    if kind == APPROVAL:
        if not isinstance(approve, bool):
            raise InvalidInput("this run waits for an approval: give approve (true or false)")
        if answer is not MISSING:
            raise InvalidInput("this run waits for an approval, not an answer")
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidInput("arguments must be a JSON object")
        if arguments is not None and not approve:
            raise InvalidInput("edited arguments are given only with approve=true")
        data: dict[str, Any] = {"approve": approve}
        if reason is not None:
            data["reason"] = reason
        if arguments is not None:
            data["arguments"] = arguments
        return data
    if kind == QUESTION:
        if answer is MISSING:
            raise InvalidInput("this run waits for an answer to its question: give answer")
        if approve is not None or arguments is not None:
            raise InvalidInput("this run asks a question: give answer, not an approval")
        check_answer(waiting.get("schema"), answer)
        return {"answer": answer}
    raise InvalidInput(f"this run waits for input of an unknown kind {kind!r}")
