"""A resumed parent finds its children where they are: a child that ended while the
parent's process was down gives its result, a child announced but not yet created when the
process died is created then, and a model agent's ``spawn_agent`` call cut off by the crash
gets its child's result. No child ever runs twice because its parent was resumed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import culm
from culm.errors import NotFound
from culm.testing import Reply, ScriptedModel, call, override_model
from tests.conftest import EngineFactory
from tests.resume.crash import crash, until

GATE: dict[str, asyncio.Event] = {}
"""The gate the children wait at, made anew by each test (an event belongs to one loop)."""
executed: list[str] = []
"""The run id of every execution of a child's function, resumed or not."""

REDIS_BUS = "redis://127.0.0.1:6379/0?channel=culm_t_{}"

app = culm.App()


@app.agent(resume=True)
async def helper(run: culm.RunContext, input: str) -> str:
    executed.append(run.run_id)
    await run.until_cancelled(GATE["open"].wait())
    return f"child says {input}"


@app.agent(resume=True)
async def parent(run: culm.RunContext, input: None = None) -> dict[str, Any]:
    child = await run.spawn("helper", "hello")
    result = await run.wait_for(child)
    return {"child": result.run_id, "output": result.output, "status": result.status.value}


children_only = culm.App()
children_only.agent(helper, resume=True)


def boss_app() -> culm.App:
    """A model agent that spawns ``helper`` through the built-in tool."""
    boss = culm.App()
    boss.agent(helper, resume=True)
    boss.add_agent("boss", model="openai:none", tools=["spawn_agent"], max_rounds=4)
    return boss


async def kinds_of(engine: culm.Engine, run_id: str) -> list[str]:
    return [e.type for e in await engine.events(run_id, limit=10_000)]


async def has(engine: culm.Engine, run_id: str, kind: str) -> bool:
    return kind in await kinds_of(engine, run_id)


def fresh() -> None:
    GATE["open"] = asyncio.Event()
    executed.clear()


class TestChildEndedWhileDown:
    async def test_the_resumed_parent_gets_its_result_without_running_it_again(
        self, make_engine: EngineFactory
    ) -> None:
        """The child runs on another process, which stays up; it ends while its parent's
        process is dead. The process that resumes the parent reports the recorded end."""
        fresh()
        bus = REDIS_BUS.format(uuid.uuid4().hex[:12])
        # the parent's worker runs one run at a time: its child is claimed by the other
        async with make_engine(app, role="worker", concurrency=1, bus_url=bus) as first:
            run = await first.start_run("parent")
            await until(lambda: has(first, run.id, "run.started"))
            async with make_engine(children_only, role="worker", bus_url=bus) as other:

                async def child_running() -> bool:
                    kids = await other.children(run.id)
                    return bool(kids) and other.local_runner(kids[0].id) is not None

                await until(child_running)
                [child] = await other.children(run.id)
                await crash(first)
                GATE["open"].set()
                ended_child = await other.wait(child.id, timeout=20)
                assert ended_child.status is culm.RunStatus.COMPLETED
                # the parent's log knows nothing of that end yet
                assert (await other.get_run(run.id)).status is culm.RunStatus.RUNNING
                assert "child.completed" not in await kinds_of(other, run.id)
                async with make_engine(app, role="worker", bus_url=bus) as third:
                    ended = await third.wait(run.id, timeout=20)
                    parent_kinds = await kinds_of(third, run.id)
                    child_kinds = await kinds_of(third, child.id)
                    kids = await third.children(run.id)
        assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
        assert ended.attempt == 1
        assert ended.state.output == {
            "child": child.id,
            "output": "child says hello",
            "status": "completed",
        }
        assert executed == [child.id]  # it ran once
        assert [k.id for k in kids] == [child.id]
        assert "run.resumed" not in child_kinds and child_kinds.count("run.started") == 1
        assert parent_kinds.count("child.started") == 1
        assert parent_kinds.count("child.completed") == 1
        assert parent_kinds.index("run.resumed") < parent_kinds.index("child.completed")


class TestAnnouncedNotCreated:
    async def test_the_child_is_created_on_resume_once(self, make_engine: EngineFactory) -> None:
        """The process dies after ``child.started`` is committed and before the child's run
        exists: the resumed parent creates it, under the id it announced."""
        fresh()
        async with make_engine(app) as first:
            start_run = first.start_run
            cut = asyncio.Event()

            async def start_run_or_die(*args: Any, **kwargs: Any) -> culm.Run:
                if kwargs.get("trigger") is not culm.Trigger.SPAWN:
                    return await start_run(*args, **kwargs)
                cut.set()
                await asyncio.Event().wait()
                raise AssertionError("unreachable")

            first.start_run = start_run_or_die  # type: ignore[method-assign]
            run = await first.start_run("parent")
            await until(lambda: _set(cut))
            announced = [
                e for e in await first.events(run.id, limit=1000) if e.type == "child.started"
            ]
            assert len(announced) == 1
            child_id = announced[0].data["run_id"]
            try:
                await first.get_run(child_id)
            except NotFound:
                pass
            else:
                raise AssertionError("the child was created before the crash")
            await crash(first)
        GATE["open"].set()
        async with make_engine(app) as second:
            ended = await second.wait(run.id, timeout=20)
            kids = await second.children(run.id)
            child = await second.get_run(child_id)
            parent_kinds = await kinds_of(second, run.id)
        assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
        assert ended.state.output == {
            "child": child_id,
            "output": "child says hello",
            "status": "completed",
        }
        assert [k.id for k in kids] == [child_id]
        assert executed == [child_id]
        assert (child.input, child.session_id) == ("hello", announced[0].data["session_id"])
        assert child.trigger is culm.Trigger.SPAWN and child.parent_run_id == run.id
        assert parent_kinds.count("child.started") == 1
        assert parent_kinds.count("child.completed") == 1


class TestModelAgentSpawn:
    async def test_a_spawn_agent_call_cut_off_gets_the_child_result(
        self, make_engine: EngineFactory
    ) -> None:
        fresh()
        model = ScriptedModel(
            Reply(calls=[call("spawn_agent", agent="helper", input="hello")]),
            "the helper said hello",
        )
        boss = boss_app()
        with override_model(boss, "boss", model):
            async with make_engine(boss) as first:
                run = await first.start_run("boss", "delegate")

                async def child_running() -> bool:
                    kids = await first.children(run.id)
                    return bool(kids) and await has(first, kids[0].id, "run.started")

                await until(child_running)
                [child] = await first.children(run.id)
                await crash(first)
            GATE["open"].set()
            async with make_engine(boss) as second:
                ended = await second.wait(run.id, timeout=20)
                events = await second.events(run.id, limit=10_000)
                kids = await second.children(run.id)
                child_run = await second.get_run(child.id)
        assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
        assert ended.attempt == 1
        assert [k.id for k in kids] == [child.id]  # not spawned again
        assert child_run.status is culm.RunStatus.COMPLETED
        assert executed == [child.id, child.id]  # resumed with it, not started anew
        kinds = [e.type for e in events]
        assert kinds.count("child.started") == 1 and kinds.count("child.completed") == 1
        assert "tool.failed" not in kinds
        [completed] = [e.data for e in events if e.type == "tool.completed"]
        assert completed["name"] == "spawn_agent"
        assert completed["result"]["run_id"] == child.id
        assert completed["result"]["status"] == "completed"
        assert completed["result"]["output"] == "child says hello"
        # and the model read that result in its next round
        last = model.requests[-1].messages[-1]
        assert last["role"] == "tool" and child.id in last["content"]
        assert "child says hello" in last["content"]
        assert ended.state.output["text"] == "the helper said hello"

    async def test_cut_off_before_the_child_was_created(self, make_engine: EngineFactory) -> None:
        """Announced, not created: the resumed run creates it, and the call made again
        gets that child, not a second one."""
        fresh()
        GATE["open"].set()
        model = ScriptedModel(
            Reply(calls=[call("spawn_agent", agent="helper", input="hello")]),
            "the helper said hello",
        )
        boss = boss_app()
        with override_model(boss, "boss", model):
            async with make_engine(boss) as first:
                start_run = first.start_run
                cut = asyncio.Event()

                async def start_run_or_die(*args: Any, **kwargs: Any) -> culm.Run:
                    if kwargs.get("trigger") is not culm.Trigger.SPAWN:
                        return await start_run(*args, **kwargs)
                    cut.set()
                    await asyncio.Event().wait()
                    raise AssertionError("unreachable")

                first.start_run = start_run_or_die  # type: ignore[method-assign]
                run = await first.start_run("boss", "delegate")
                await until(lambda: _set(cut))
                announced = [
                    e for e in await first.events(run.id, limit=1000) if e.type == "child.started"
                ]
                await crash(first)
            async with make_engine(boss) as second:
                ended = await second.wait(run.id, timeout=20)
                events = await second.events(run.id, limit=10_000)
                kids = await second.children(run.id)
        assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
        [child_id] = [e.data["run_id"] for e in announced]
        assert [k.id for k in kids] == [child_id]
        assert [child_id] == executed
        kinds = [e.type for e in events]
        assert kinds.count("child.started") == 1 and kinds.count("child.completed") == 1
        [completed] = [e.data for e in events if e.type == "tool.completed"]
        assert completed["result"]["run_id"] == child_id
        assert completed["result"]["output"] == "child says hello"


async def _set(event: asyncio.Event) -> bool:
    return event.is_set()
