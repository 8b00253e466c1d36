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


class TestSession:
    async def test_a_queued_run_starts_only_after_the_resumed_one_ends(
        self, make_engine: EngineFactory
    ) -> None:
        GATE["open"] = asyncio.Event()
        async with make_engine(app) as first:
            a = await first.start_run("gated", "a")
            b = await first.start_run(
                "gated", "b", session_id=a.session_id, if_busy=culm.BusyPolicy.ENQUEUE
            )
            await until(lambda: has(first, a.id, "gated.begin"))
            await crash(first)
        # the queued run is not started by polling: only when the resumed run ends
        async with make_engine(app, idle_poll_seconds=120) as second:
            await until(lambda: has(second, a.id, "run.resumed"))
            await second.start_waiting()  # what starts runs whose session is free
            assert (await second.get_run(b.id)).status is culm.RunStatus.PENDING
            GATE["open"].set()
            ended_a = await second.wait(a.id, timeout=10)
            ended_b = await second.wait(b.id, timeout=10)
            a_end = (await second.events(a.id))[-1]
            b_start = next(e for e in await second.events(b.id) if e.type == "run.started")
        assert (ended_a.status, ended_b.status) == (culm.RunStatus.COMPLETED,) * 2
        assert (ended_a.attempt, ended_b.attempt) == (1, 0)
        assert a_end.type == "run.completed" and b_start.pos > a_end.pos


class TestSpawnLimits:
    async def test_a_parent_at_its_limit_cannot_spawn_another_after_resume(
        self, make_engine: EngineFactory
    ) -> None:
        GATE["open"] = asyncio.Event()
        GATE["open"].set()
        async with make_engine(app) as engine:
            whole = await engine.wait((await engine.start_run("one_child")).id, timeout=20)
        assert whole.state.output["refused"]  # refused without a crash
        GATE["open"] = asyncio.Event()
        async with make_engine(app) as first:
            parent = await first.start_run("one_child")

            async def child_running() -> bool:
                children = await first.children(parent.id)
                return bool(children) and await has(first, children[0].id, "gated.begin")

            await until(child_running)
            await crash(first)
        GATE["open"].set()
        async with make_engine(app) as second:
            ended = await second.wait(parent.id, timeout=20)
            children = await second.children(parent.id)
        assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
        assert ended.attempt == 1
        refused = f"run {parent.id} has started 1 children, the most it may"
        assert (
            whole.state.output["refused"]
            == f"run {whole.id} has started 1 children, the most it may"
        )
        assert ended.state.output == {"child": "done first", "refused": refused}
        assert [c.input for c in children] == ["first"]


class TestSchedule:
    async def test_a_resumed_scheduled_run_is_one_run_in_its_ledger(self, db_url: str) -> None:
        GATE["open"] = asyncio.Event()
        clock = Clock()
        settings = culm.Settings(database_url=db_url, cancel_grace=1.0)
        first = culm.Engine(app, settings, clock=clock)
        await first.__aenter__()
        spec = ScheduleSpec(agent="gated", input="tick", every=60, overlap=Overlap.SKIP)
        schedule = await first.create_schedule(spec)
        await first.scheduler.tick(clock.advance(60))
        [run] = await first.list_runs(culm.RunFilter(schedule_id=schedule.id))
        await until(lambda: has(first, run.id, "gated.begin"))
        await crash(first)
        async with culm.Engine(app, settings, clock=clock) as second:
            await until(lambda: has(second, run.id, "run.resumed"))
            await second.scheduler.tick(clock.advance(60))  # the resumed run still goes on
            GATE["open"].set()
            ended = await second.wait(run.id, timeout=10)
            await second.scheduler.tick()  # counts the end
            firings = list(reversed(await second.schedule_firings(schedule.id)))
            runs = await second.list_runs(culm.RunFilter(schedule_id=schedule.id))
            counts = (await second.get_schedule(schedule.id)).counts
        assert ended.status is culm.RunStatus.COMPLETED and ended.attempt == 1
        assert [(f.outcome.value, f.scheduled_at - T0) for f in firings] == [
            ("started", 60),
            ("skipped_overlap", 120),
        ]
        assert (firings[0].run_id, firings[0].run_status, firings[0].settled) == (
            run.id,
            culm.RunStatus.COMPLETED,
            True,
        )
        assert [r.id for r in runs] == [run.id]
        assert counts == culm.models.FiringCounts(started=1, completed=1, skipped_overlap=1)


async def has(engine: culm.Engine, run_id: str, kind: str) -> bool:
    return kind in await kinds_of(engine, run_id)


async def _set(event: asyncio.Event) -> bool:
    return event.is_set()
