"""A function agent that opted in runs again from the top when resumed: its steps return
their recorded results, its recorded emits are not repeated, its children are its own."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import culm
from tests.conftest import EngineFactory
from tests.resume.crash import crash, until

CHARGES: list[str] = []
SHIPMENTS: list[str] = []
GATE: dict[str, asyncio.Event] = {}
"""The gate the agents wait at, made anew by each test (an event belongs to one loop)."""
TRIES = itertools.count()

app = culm.App()


async def charge(order: str) -> dict[str, Any]:
    CHARGES.append(order)
    return {"charge_id": f"ch_{order}", "amount": 42}


def ship(order: str) -> str:
    SHIPMENTS.append(order)
    return f"parcel for {order}"


@app.agent(resume=True)
async def checkout(run: culm.RunContext, input: str) -> dict[str, Any]:
    await run.emit("shop.begin", {"order": input})
    charged = await run.step("charge card", charge, input)
    await run.emit("shop.charged", charged)
    await run.until_cancelled(GATE["open"].wait())  # the process dies here
    shipped = await run.step("ship", ship, input)
    return {"charged": charged, "shipped": shipped, "attempt": run.attempt}


@app.agent(resume=True)
async def forgetful(run: culm.RunContext, input: None = None) -> None:
    await run.emit("shop.begin", {"try": next(TRIES)})  # differs on every execution
    await run.until_cancelled(GATE["open"].wait())


@app.agent(resume=True)
async def quitter(run: culm.RunContext, input: None = None) -> str:
    if next(TRIES) % 2:  # on resume it returns at once: it does less than it did
        return "nothing to do"
    await run.emit("shop.begin", {"order": "o-2"})
    await run.until_cancelled(GATE["open"].wait())
    return "done"


@app.agent(resume=True)
async def renamer(run: culm.RunContext, input: None = None) -> str:
    name = "charge card" if next(TRIES) % 2 == 0 else "charge the card"
    await run.step(name, charge, "o-3")
    await run.until_cancelled(GATE["open"].wait())
    return "done"


@app.agent(resume=True)
async def slow_child(run: culm.RunContext, input: str) -> str:
    await run.until_cancelled(GATE["open"].wait())
    return f"child says {input}"


@app.agent(resume=True)
async def parent(run: culm.RunContext, input: None = None) -> Any:
    child = await run.spawn("slow_child", "hello")
    result = await run.wait_for(child)
    return {"child": result.run_id, "output": result.output, "status": result.status.value}


async def has(engine: culm.Engine, run_id: str, kind: str) -> bool:
    return any(e.type == kind for e in await engine.events(run_id, limit=10_000))


class TestSteps:
    async def test_steps_and_emits_are_not_done_again(self, make_engine: EngineFactory) -> None:
        GATE["open"] = asyncio.Event()
        CHARGES.clear()
        SHIPMENTS.clear()
        async with make_engine(app) as first:
            run = await first.start_run("checkout", "o-1")
            await until(lambda: has(first, run.id, "shop.charged"))
            await crash(first)
        GATE["open"].set()
        async with make_engine(app) as second:
            ended = await second.wait(run.id, timeout=20)
            events = await second.events(run.id)
        assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
        assert ended.state.output == {
            "charged": {"charge_id": "ch_o-1", "amount": 42},
            "shipped": "parcel for o-1",
            "attempt": 1,
        }
        assert CHARGES == ["o-1"] and SHIPMENTS == ["o-1"]
        kinds = [e.type for e in events]
        assert kinds == [
            "run.queued",
            "run.started",
            "shop.begin",
            "step.completed",
            "shop.charged",
            "run.resumed",
            "step.completed",
            "run.completed",
        ]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        resumed = events[5]
        assert resumed.data == {"attempt": 1, "after_seq": 5, "cause": "crash"}

    async def test_a_replay_that_differs_fails_clearly(self, make_engine: EngineFactory) -> None:
        GATE["open"] = asyncio.Event()
        async with make_engine(app) as first:
            run = await first.start_run("forgetful")
            await until(lambda: has(first, run.id, "shop.begin"))
            await crash(first)
        async with make_engine(app) as second:
            ended = await second.wait(run.id, timeout=20)
        assert ended.status is culm.RunStatus.FAILED
        assert ended.state.error is not None
        assert "non-deterministic agent" in ended.state.error
        assert "'shop.begin'" in ended.state.error and "seq 3" in ended.state.error

    async def test_a_replay_that_stops_short_fails_clearly(
        self, make_engine: EngineFactory
    ) -> None:
        """Returning before every recorded event was matched is a different run too."""
        GATE["open"] = asyncio.Event()
        while next(TRIES) % 2 == 0:  # an odd one drawn: the first execution draws even
            pass
        async with make_engine(app) as first:
            run = await first.start_run("quitter")
            await until(lambda: has(first, run.id, "shop.begin"))
            await crash(first)
        async with make_engine(app) as second:
            ended = await second.wait(run.id, timeout=20)
            kinds = [e.type for e in await second.events(run.id)]
        assert ended.status is culm.RunStatus.FAILED
        assert ended.state.error is not None
        assert ended.state.error.endswith(
            "non-deterministic agent: on resume it returned where its log has "
            "'shop.begin' {'order': 'o-2'} (seq 3) not replayed"
        )
        assert kinds == ["run.queued", "run.started", "shop.begin", "run.resumed", "run.failed"]

    async def test_a_step_of_another_name_fails_clearly(self, make_engine: EngineFactory) -> None:
        GATE["open"] = asyncio.Event()
        CHARGES.clear()
        while next(TRIES) % 2 == 0:
            pass
        async with make_engine(app) as first:
            run = await first.start_run("renamer")
            await until(lambda: has(first, run.id, "step.completed"))
            await crash(first)
        async with make_engine(app) as second:
            ended = await second.wait(run.id, timeout=20)
        assert ended.status is culm.RunStatus.FAILED
        assert ended.state.error is not None
        assert (
            "non-deterministic agent: on resume it ran step 'charge the card' where its log "
            "has 'step.completed' {'name': 'charge card', "
        ) in ended.state.error
        assert "(seq 3)" in ended.state.error
        assert CHARGES == ["o-3"]  # the renamed step did not run either

    async def test_a_result_that_is_not_json_is_refused(self, make_engine: EngineFactory) -> None:
        odd = culm.App()

        @odd.agent(resume=True)
        async def bad_step(run: culm.RunContext, input: None = None) -> None:
            await run.step("make a set", lambda: {1, 2})

        async with make_engine(odd) as engine:
            ended = await engine.wait((await engine.start_run("bad_step")).id, timeout=10)
        assert ended.status is culm.RunStatus.FAILED
        assert ended.state.error is not None
        assert ended.state.error.startswith(
            "step 'make a set' returned a result that cannot be recorded (a step's result "
            "must be JSON): "
        )
        assert "set" in ended.state.error.split(": ", 1)[1]


class TestChildren:
    async def test_a_resumed_parent_takes_its_child_back(self, make_engine: EngineFactory) -> None:
        GATE["open"] = asyncio.Event()
        async with make_engine(app) as first:
            run = await first.start_run("parent")

            async def child_running() -> bool:
                children = await first.children(run.id)
                return bool(children) and await has(first, children[0].id, "run.started")

            await until(child_running)
            await crash(first)
        GATE["open"].set()
        async with make_engine(app) as second:
            ended = await second.wait(run.id, timeout=20)
            assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
            children = await second.children(run.id)
            assert len(children) == 1  # not started twice
            assert ended.state.output == {
                "child": children[0].id,
                "output": "child says hello",
                "status": "completed",
            }
            kinds = [e.type for e in await second.events(run.id)]
            assert kinds.count("child.started") == 1 and kinds.count("child.completed") == 1
