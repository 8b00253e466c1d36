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
    changes: dict[str, Any] = {"last_seq": event.seq, "last_event_at": event.ts}
    data = event.data
    kind = event.type
    if kind == ev.RUN_STARTED:
        changes["status"] = RunStatus.RUNNING
        changes["started_at"] = event.ts
    elif kind == ev.ROUND_STARTED:
        changes["round"] = int(data.get("round", state.round + 1))
    elif kind in _TOOL_PHASES:
        changes["last_tool"] = data.get("name", state.last_tool)
        changes["last_tool_phase"] = _TOOL_PHASES[kind]
    elif kind == ev.BUDGET_UPDATED:
        changes["usage"] = data.get("usage", data)
    elif kind == ev.CHILD_COMPLETED and isinstance(data.get("usage"), dict):
        changes["children_usage"] = add_usage(state.children_usage, data["usage"])
    elif kind in ev.TERMINAL:
        changes["status"] = _TERMINAL_STATUS[kind]
        changes["completed_at"] = event.ts
        if kind == ev.RUN_COMPLETED:
            changes["output"] = data.get("output")
        else:
            changes["error"] = data.get("error")
    return replace(state, **changes)


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
