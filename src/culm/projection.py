"""The run's live state as a pure function of its events.

``advance(state, event)`` is the only place that decides what an event means for the
run's state; the runner applies it as events are emitted, and anyone holding the log can
rebuild the state by folding it over the stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from culm import events as ev
from culm.events import Event
from culm.models import RunState, RunStatus, ToolPhase, add_usage

_TOOL_PHASES = {
    ev.TOOL_STARTED: ToolPhase.BEGIN,
    ev.TOOL_COMPLETED: ToolPhase.FINISHED,
    ev.TOOL_FAILED: ToolPhase.ERROR,
}


def advance(state: RunState, event: Event) -> RunState:
    """The state after ``event``; ``state`` is not changed."""
    after = replace(state)
    apply(after, event)
    return after


def apply(state: RunState, event: Event) -> None:
    """Change ``state`` in place to the state after ``event``.

    For the one who owns the state (a runner): one object per run rather than one per
    event, which at thousands of events a second was the largest cost of an emit. Whoever
    hands the state on must hand on a copy (the event log copies it when it takes a batch).
    """
    state.last_seq = event.seq
    state.last_event_at = event.ts
    kind = event.type
    if kind == ev.RUN_STARTED:
        state.status = RunStatus.RUNNING
        state.started_at = event.ts
    elif kind == ev.ROUND_STARTED:
        state.round = int(event.data.get("round", state.round + 1))
    elif kind in _TOOL_PHASES:
        state.last_tool = event.data.get("name", state.last_tool)
        state.last_tool_phase = _TOOL_PHASES[kind]
    elif kind == ev.BUDGET_UPDATED:
        state.usage = event.data.get("usage", event.data)
    elif kind == ev.RUN_WAITING:
        state.status = RunStatus.WAITING
        state.waiting = _wait(event)
    elif kind == ev.INPUT_RECEIVED:
        state.status = RunStatus.PENDING  # to be taken up again by a process
        state.waiting = None
    elif kind == ev.RUN_RESUMED:
        state.status = RunStatus.RUNNING
    elif kind == ev.CHILD_COMPLETED and isinstance(event.data.get("usage"), dict):
        state.children_usage = add_usage(state.children_usage, event.data["usage"])
    elif kind in ev.TERMINAL:
        state.status = _TERMINAL_STATUS[kind]
        state.completed_at = event.ts
        state.waiting = None
        if kind == ev.RUN_COMPLETED:
            state.output = event.data.get("output")
        else:
            state.error = event.data.get("error")


def _wait(event: Event) -> dict[str, Any]:
    """What the run waits for, as its state shows it: the event's data and its seq."""
    return {**event.data, "seq": event.seq}


_TERMINAL_STATUS = {
    ev.RUN_COMPLETED: RunStatus.COMPLETED,
    ev.RUN_FAILED: RunStatus.FAILED,
    ev.RUN_CANCELLED: RunStatus.CANCELLED,
    ev.RUN_INTERRUPTED: RunStatus.INTERRUPTED,
}


def replay(events: Iterable[Event], state: RunState | None = None) -> RunState:
    """Fold ``advance`` over a stream."""
    state = state or RunState()
    for event in events:
        state = advance(state, event)
    return state
