"""A resumed run's past, read from its own event log: the log is the journal.

When the process running a run dies, another (or the same, started again) resumes it
from its events; there is no second store of checkpoints. A function agent that opted in
(``@app.agent(resume=True)``) runs again from the top, and its emits and steps are
matched, in order, against what it recorded (``Replay``): what is in the log is not done
or emitted again. A model agent's loop folds the log into rounds (``rounds``): completed
rounds are not redone, a recorded answer is not asked for again, a recorded tool result
is not computed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from culm import events as ev
from culm.errors import CulmError
from culm.events import Event

ROUND_RESTARTED = ev.ROUND_RESTARTED
RUN_RESUMED = ev.RUN_RESUMED
STEP_COMPLETED = ev.STEP_COMPLETED

_NOT_THE_AGENTS = frozenset(
    {
        ev.RUN_QUEUED,
        ev.RUN_STARTED,
        RUN_RESUMED,
        ROUND_RESTARTED,
        ev.CHILD_STARTED,
        ev.CHILD_COMPLETED,
        ev.RUN_WAITING,
        ev.INPUT_RECEIVED,
    }
)
"""Events the engine writes for a run, not the agent: never matched on replay (a wait
and its answer are found by call id: see ``waiting``)."""


class NonDeterministicAgent(CulmError):
    """On resume the agent did something else than what its log recorded: it cannot be
    resumed safely, so the run fails with what differed."""

    code = "non_deterministic"


@dataclass(slots=True)
class Journal:
    """The events of a run's earlier attempts, and which attempt this is."""

    events: Sequence[Event]
    attempt: int

    @property
    def after_seq(self) -> int:
        return self.events[-1].seq if self.events else 0


class Replay:
    """Matches a function agent's emits and steps, in order, against its recorded ones."""

    __slots__ = ("_at", "_recorded")

    def __init__(self, journal: Journal) -> None:
        self._recorded = [e for e in journal.events if e.type not in _NOT_THE_AGENTS]
        self._at = 0

    @property
    def replaying(self) -> bool:
        """True while recorded events remain to be matched."""
        return self._at < len(self._recorded)

    def emitted(self, type: str, data: Any) -> None:
        """An emit during replay: it must be the next recorded event, which it stands for."""
        expected = self._next()
        if expected.type != type or expected.data != data:
            raise NonDeterministicAgent(
                f"non-deterministic agent: on resume it emitted {type!r} {_short(data)} where "
                f"its log has {expected.type!r} {_short(expected.data)} (seq {expected.seq})"
            )

    def step(self, name: str) -> Any:
        """The recorded result of the step ``name``, which must be next in the log."""
        expected = self._next()
        if expected.type != STEP_COMPLETED or expected.data.get("name") != name:
            raise NonDeterministicAgent(
                f"non-deterministic agent: on resume it ran step {name!r} where its log has "
                f"{expected.type!r} {_short(expected.data)} (seq {expected.seq})"
            )
        return expected.data.get("result")

    def finish(self) -> None:
        """The agent returned: every recorded event must have been matched, or the replay
        did less than the run had done before it was resumed."""
        if self.replaying:
            left = self._recorded[self._at]
            raise NonDeterministicAgent(
                f"non-deterministic agent: on resume it returned where its log has "
                f"{left.type!r} {_short(left.data)} (seq {left.seq}) not replayed"
            )

    def _next(self) -> Event:
        event = self._recorded[self._at]
        self._at += 1
        return event


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 120 else text[:117] + "..."


# -- the model loop's view --------------------------------------------------------------

_CALL_EVENTS = frozenset(
    {ev.TOOL_STARTED, ev.TOOL_COMPLETED, ev.TOOL_FAILED, ev.RUN_WAITING, ev.INPUT_RECEIVED}
)


@dataclass(slots=True)
class RecordedRound:
    """What the log holds of one round of a model agent."""

    number: int
    started_seq: int
    answer: dict[str, Any] | None = None
    """``message.completed`` data: the model's text and tool calls, once it answered."""
    tools: dict[str, Event] = field(default_factory=dict)
    """The last event of each call id (``tool.started|completed|failed``, or a wait for a
    person and its answer)."""
    injected: list[Event] = field(default_factory=list)
    """The messages sent to the run that it took in at this round (``message.injected``)."""
    completed: bool = False
    usage_recorded: bool = False
    """Whether the answer's usage was reported (``budget.updated``) in this round."""


@dataclass(slots=True)
class RecordedRun:
    """A model agent's rounds so far, and its last reported usage."""

    rounds: list[RecordedRound]
    usage: dict[str, Any] | None


def rounds(journal: Journal) -> RecordedRun:
    """Fold the log into rounds."""
    found: list[RecordedRound] = []
    usage: dict[str, Any] | None = None
    for event in journal.events:
        kind, data = event.type, event.data
        if kind == ev.ROUND_STARTED:
            found.append(RecordedRound(int(data.get("round", len(found) + 1)), event.seq))
        elif not found:
            continue
        elif kind == ev.MESSAGE_COMPLETED:
            found[-1].answer = data
        elif kind in _CALL_EVENTS:
            found[-1].tools[str(data.get("call_id"))] = event
        elif kind == ev.MESSAGE_INJECTED:
            found[-1].injected.append(event)
        elif kind == ev.ROUND_COMPLETED:
            found[-1].completed = True
        if kind == ev.BUDGET_UPDATED and isinstance(data.get("usage"), dict):
            usage = data["usage"]
            if found:
                found[-1].usage_recorded = True
    return RecordedRun(found, usage)
