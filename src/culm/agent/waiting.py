"""Waiting for a person: approvals of tool calls and questions (``run.ask``, ``ask_user``).

A run that needs a person writes ``run.waiting`` and stops (``RunSuspended``): no task and
no memory stay behind, only its row and its log. The answer is written to its log as
``input.received``, and the run is taken up again from that log the way a crashed run is
resumed (see ``journal``): the question asked again finds its answer there.

Each wait has a ``call_id``: a model's tool call id, or ``ask-1``, ``ask-2``... for a
function agent's questions, in the order it asks them (so a run taken up again asks the
same ones under the same ids).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import jsonschema
from pydantic import TypeAdapter, ValidationError

from culm import events as ev
from culm.errors import InvalidInput, RunSuspended
from culm.events import Event, iso

APPROVAL: Final = "approval"
QUESTION: Final = "question"

MISSING: Any = object()
"""No default: a question nobody answered in time fails its run."""

ON_TIMEOUT = ("fail", "continue")


@dataclass(slots=True, frozen=True)
class InputPolicy:
    """How long a run waits for a person, and what happens when nobody answers.

    ``on_timeout``: ``fail`` ends the run failed; ``continue`` goes on as if answered:
    an approval as refused, a question with its default (failed when it has none)."""

    timeout: float | None = None
    on_timeout: str = "fail"

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("input_timeout must be a positive number of seconds")
        if self.on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_input_timeout must be one of {', '.join(ON_TIMEOUT)}")


class Waits:
    """A run's waits so far, read from its log, and what the next one says."""

    __slots__ = ("_asks", "_clock", "answers", "asked", "policy")

    def __init__(
        self, past: list[Event] | None, policy: InputPolicy, clock: Callable[[], float]
    ) -> None:
        self.asked: set[str] = set()
        """Call ids whose ``run.waiting`` is in the log."""
        self.answers: dict[str, dict[str, Any]] = {}
        """``input.received`` data by call id."""
        for event in past or ():
            call_id = str(event.data.get("call_id"))
            if event.type == ev.RUN_WAITING:
                self.asked.add(call_id)
            elif event.type == ev.INPUT_RECEIVED:
                self.answers[call_id] = event.data
        self.policy = policy
        self._clock = clock
        self._asks = 0

    def next_ask_id(self) -> str:
        self._asks += 1
        return f"ask-{self._asks}"

    def request(
        self, kind: str, call_id: str, fields: dict[str, Any], default: Any = MISSING
    ) -> dict[str, Any]:
        """The data of the ``run.waiting`` event for a new wait."""
        data = {"kind": kind, "call_id": call_id, **fields}
        timeout = self.policy.timeout
        if timeout is not None:
            data["timeout"] = timeout
            data["deadline"] = self._clock() + timeout
            data["expires_at"] = iso(data["deadline"])
            data["on_timeout"] = self.policy.on_timeout
            if default is not MISSING:
                data["default"] = default
        return data


async def wait_for_person(
    emit: Callable[[str, dict[str, Any]], Any], waits: Waits, data: dict[str, Any]
) -> NoReturn:
    """Write ``run.waiting`` (unless the log has it already: a run taken up again before it
    was answered) and stop the run until someone answers."""
    call_id = str(data["call_id"])
    if call_id not in waits.asked:
        await emit(ev.RUN_WAITING, data)
        waits.asked.add(call_id)
    raise RunSuspended(call_id)


# questions and their answers


def answer_schema(schema: Any) -> tuple[dict[str, Any] | None, TypeAdapter[Any] | None]:
    """A question's schema as JSON Schema (what the event shows and the answer is checked
    against), and the adapter that gives the agent a typed answer when ``schema`` is a
    Python type (``int``, a pydantic model, a dataclass...) rather than a JSON Schema."""
    if schema is None:
        return None, None
    if isinstance(schema, dict):
        jsonschema.validators.validator_for(schema).check_schema(schema)
        return schema, None
    adapter: TypeAdapter[Any] = TypeAdapter(schema)
    return adapter.json_schema(), adapter


def check_answer(schema: dict[str, Any] | None, answer: Any) -> None:
    """``InvalidInput`` saying why, when ``answer`` does not fit ``schema``."""
    if schema is None:
        return
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path))
    if problems:
        shown = "; ".join(
            f"{'/'.join(map(str, p.absolute_path)) or 'answer'}: {p.message}" for p in problems[:5]
        )
        raise InvalidInput(f"the answer does not fit the question's schema: {shown}")


def typed_answer(adapter: TypeAdapter[Any] | None, answer: Any) -> Any:
    """The answer as the agent asked for it (already checked against its JSON Schema)."""
    if adapter is None:
        return answer
    try:
        return adapter.validate_python(answer)
    except ValidationError as exc:
        raise InvalidInput(f"the answer does not fit the question's type: {exc}") from None


def timed_out(data: dict[str, Any]) -> dict[str, Any] | None:
    """What a wait that timed out goes on with (``input.received`` data), or None when its
    run fails instead."""
    if data.get("on_timeout") != "continue":
        return None
    seconds = data.get("timeout")
    why = f"nobody answered within {seconds:g}s" if isinstance(seconds, int | float) else ""
    if data.get("kind") == APPROVAL:
        return {"approve": False, "reason": why, "timed_out": True}
    if "default" in data:
        return {"answer": data["default"], "timed_out": True}
    return None


def refusal(data: dict[str, Any]) -> str:
    """What the model reads when a person refused its call."""
    reason = data.get("reason")
    return "a person refused this call" + (f": {reason}" if reason else " (no reason given)")
