"""Reading a run's whole stream in tests, and checking that a model agent's is well formed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import culm


async def all_events(engine: culm.Engine, run_id: str, timeout: float = 30.0) -> list[culm.Event]:
    """Every event of the run up to its terminal one."""
    async with asyncio.timeout(timeout):
        return [event async for event in engine.subscribe(run_id)]


async def events_until(
    engine: culm.Engine, run_id: str, type: str, timeout: float = 30.0
) -> list[culm.Event]:
    """The run's events up to and including the first of ``type``."""
    seen: list[culm.Event] = []
    async with asyncio.timeout(timeout):
        async for event in engine.subscribe(run_id):
            seen.append(event)
            if event.type == type:
                return seen
    raise AssertionError(f"the run ended without a {type} event: {[e.type for e in seen]}")


def types(events: Sequence[culm.Event], *, deltas: bool = False) -> list[str]:
    """Event types in order, leaving out ``message.delta`` unless asked."""
    return [e.type for e in events if deltas or e.type != "message.delta"]


def check_rounds(events: Sequence[culm.Event]) -> None:
    """Assert the grammar of a model agent's stream.

    run.queued run.started ( round )* terminal, where a round is
    round.started message.delta* message.completed budget.updated
    (tool.started | tool.completed | tool.failed)* round.completed, each tool call started
    before it ends and ended exactly once, round numbers counting up from 1.
    """
    kinds = [e.type for e in events]
    assert kinds[:2] == ["run.queued", "run.started"], kinds
    assert kinds[-1] in ("run.completed", "run.failed", "run.cancelled"), kinds
    expected_round = 1
    i = 2
    while i < len(events) - 1:
        assert events[i].type == "round.started", (i, kinds)
        assert events[i].data == {"round": expected_round}
        i += 1
        while events[i].type == "message.delta":
            i += 1
        assert events[i].type == "message.completed", (i, kinds)
        calls = {c["id"] for c in events[i].data.get("tool_calls", [])}
        assert events[i + 1].type == "budget.updated", (i, kinds)
        i += 2
        open_calls: set[str] = set()
        ended: set[str] = set()
        while events[i].type.startswith("tool."):
            call_id = events[i].data["call_id"]
            if events[i].type == "tool.started":
                assert call_id in calls and call_id not in open_calls | ended
                open_calls.add(call_id)
            else:
                open_calls.remove(call_id)
                ended.add(call_id)
            i += 1
        assert not open_calls, f"tool calls never ended: {open_calls}"
        assert events[i].type == "round.completed", (i, kinds)
        assert events[i].data == {"round": expected_round}
        expected_round += 1
        i += 1
