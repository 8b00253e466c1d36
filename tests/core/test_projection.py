"""The run's live state is a pure function of its events."""

from __future__ import annotations

from typing import Any

import pytest

from culm.events import Event
from culm.models import RunState, RunStatus, ToolPhase
from culm.projection import advance, apply, replay


def event(seq: int, type: str, data: dict[str, Any] | None = None, ts: float = 100.0) -> Event:
    return Event(seq, "run_1", "ses_1", type, data or {}, ts=ts)


CASES: list[tuple[str, list[Event], dict[str, Any]]] = [
    ("queued", [event(1, "run.queued")], {"status": RunStatus.PENDING, "last_seq": 1}),
    (
        "started",
        [event(1, "run.queued"), event(2, "run.started", ts=101.0)],
        {"status": RunStatus.RUNNING, "started_at": 101.0, "last_event_at": 101.0},
    ),
    (
        "rounds count up, or follow the round number given",
        [
            event(1, "round.started"),
            event(2, "round.started"),
            event(3, "round.started", {"round": 7}),
        ],
        {"round": 7, "last_seq": 3},
    ),
    (
        "round without number increments",
        [event(1, "round.started"), event(2, "round.started")],
        {"round": 2},
    ),
    (
        "tool begins",
        [event(1, "tool.started", {"name": "search"})],
        {"last_tool": "search", "last_tool_phase": ToolPhase.BEGIN},
    ),
    (
        "tool finishes",
        [
            event(1, "tool.started", {"name": "search"}),
            event(2, "tool.completed", {"name": "search"}),
        ],
        {"last_tool": "search", "last_tool_phase": ToolPhase.FINISHED},
    ),
    (
        "tool fails",
        [event(1, "tool.started", {"name": "a"}), event(2, "tool.failed", {"name": "a"})],
        {"last_tool": "a", "last_tool_phase": ToolPhase.ERROR},
    ),
    (
        "latest usage wins",
        [
            event(1, "budget.updated", {"usage": {"total_tokens": 5}}),
            event(2, "budget.updated", {"usage": {"total_tokens": 9}}),
        ],
        {"usage": {"total_tokens": 9}},
    ),
    (
        "completed keeps the output",
        [event(1, "run.started"), event(2, "run.completed", {"output": [1, 2]}, ts=105.0)],
        {"status": RunStatus.COMPLETED, "output": [1, 2], "completed_at": 105.0},
    ),
    (
        "failed keeps the error",
        [event(1, "run.started"), event(2, "run.failed", {"error": "boom"})],
        {"status": RunStatus.FAILED, "error": "boom", "output": None},
    ),
    (
        "cancelled",
        [event(1, "run.started"), event(2, "run.cancelled", {"error": "cancelled by ann"})],
        {"status": RunStatus.CANCELLED, "error": "cancelled by ann"},
    ),
    (
        "interrupted",
        [event(1, "run.queued"), event(2, "run.interrupted", {"error": "died"})],
        {"status": RunStatus.INTERRUPTED, "error": "died"},
    ),
    (
        "user events only move the cursor",
        [event(1, "run.started"), event(2, "myapp.progress", {"round": 3, "name": "x"}, ts=7.0)],
        {
            "status": RunStatus.RUNNING,
            "round": 0,
            "last_tool": None,
            "last_seq": 2,
            "last_event_at": 7.0,
        },
    ),
]


@pytest.mark.parametrize(("name", "events", "expected"), CASES, ids=[c[0] for c in CASES])
def test_projection(name: str, events: list[Event], expected: dict[str, Any]) -> None:
    state = replay(events)
    for field, value in expected.items():
        assert getattr(state, field) == value, field


def test_advance_does_not_change_its_input() -> None:
    before = RunState()
    after = advance(before, event(1, "run.started"))
    assert before == RunState()
    assert after.status is RunStatus.RUNNING


@pytest.mark.parametrize(("name", "events", "expected"), CASES, ids=[c[0] for c in CASES])
def test_apply_in_place_reaches_the_same_state(
    name: str, events: list[Event], expected: dict[str, Any]
) -> None:
    """A runner advances one state object in place; it ends where the pure fold ends."""
    state = RunState()
    for e in events:
        apply(state, e)
    assert state == replay(events)
