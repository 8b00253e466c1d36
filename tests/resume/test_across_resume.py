"""What holds for a run without a crash holds across a resume: its token budget stops it
at the same round, a run queued behind it on its session waits for its end, its spawn
limits count the children it had, and its schedule's ledger shows one run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import culm
from culm.agent.spawn import SpawnLimits
from culm.errors import SpawnRefused
from culm.models import Overlap, ScheduleSpec
from culm.testing import override_model
from tests.conftest import EngineFactory
from tests.resume.crash import Stepper, crash, stopped_after, transcript, until
from tests.schedule.conftest import T0, Clock

GATE: dict[str, asyncio.Event] = {}
"""The gate the function agents wait at, made anew by each test."""

app = culm.App()


@app.tool(idempotent=True)
async def record(n: int) -> str:
    """Records that it ran; safe to run again."""
    return f"recorded {n}"


app.add_agent("frugal", model="openai:none", tools=[record], max_rounds=20, token_budget=150)


@app.agent(resume=True)
async def gated(run: culm.RunContext, input: str) -> str:
    await run.emit("gated.begin", {"input": input})
    await run.until_cancelled(GATE["open"].wait())
    return f"done {input}"


@app.agent(resume=True, spawn=SpawnLimits(max_children=1))
async def one_child(run: culm.RunContext, input: None = None) -> dict[str, Any]:
    child = await run.spawn("gated", "first")
    await run.until_cancelled(GATE["open"].wait())
    try:
        await run.spawn("gated", "second")
    except SpawnRefused as exc:
        refused = exc.message
    else:
        refused = ""
    result = await run.wait_for(child)
    return {"child": result.output, "refused": refused}


async def kinds_of(engine: culm.Engine, run_id: str) -> list[str]:
    return [e.type for e in await engine.events(run_id, limit=10_000)]


class TestBudget:
    async def uninterrupted(self, make_engine: EngineFactory) -> list[culm.Event]:
        with override_model(app, "frugal", Stepper(steps=12)):
            async with make_engine(app) as engine:
                run = await engine.start_run("frugal", "go")
                await engine.wait(run.id, timeout=20)
                return await engine.events(run.id, limit=10_000)

    @pytest.mark.parametrize(
        ("after", "of_round"),
        [
            ("round.completed", 1),  # between rounds
            ("round.completed", 3),
            ("message.delta", 3),  # mid-answer: asked again
            ("budget.updated", 3),  # answered, its usage reported, its tool call not made
            ("tool.completed", 3),  # its result recorded, the round not ended
        ],
    )
    async def test_a_token_budget_stops_it_at_the_same_round(
        self, make_engine: EngineFactory, after: str, of_round: int
    ) -> None:
        whole = await self.uninterrupted(make_engine)
        rounds = [e.data["round"] for e in whole if e.type == "round.started"]
        assert whole[-1].type == "run.completed"
        assert whole[-1].data["output"]["stop_reason"] == "budget_exhausted"
        assert len(rounds) > of_round + 1  # the budget stops it after the kill point
        # killed once the first such event of the round is committed
        started = next(
            e.seq for e in whole if e.type == "round.started" and e.data["round"] == of_round
        )
        kill = next(e.seq for e in whole if e.type == after and e.seq > started)
        with override_model(app, "frugal", Stepper(steps=12)):
            async with make_engine(app) as first:
                with stopped_after(first, kill) as stopped:
                    run = await first.start_run("frugal", "go")
                    await until(lambda: _set(stopped))
                    await crash(first)
            async with make_engine(app) as second:
                ended = await second.wait(run.id, timeout=20)
                events = await second.events(run.id, limit=10_000)
        assert ended.attempt == 1
        assert transcript(events) == transcript(whole)
        assert ended.state.usage == whole[-1].data["output"]["usage"]


async def _set(event: asyncio.Event) -> bool:
    return event.is_set()
