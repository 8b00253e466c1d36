"""Limits on spawning, per agent and global, and the watchdog: a clear refusal or a
cancel with reason ``timeout``, never a crash."""

from __future__ import annotations

import culm
from tests.conftest import EngineFactory
from tests.spawn.agents import app


async def output_of(engine: culm.Engine, agent: str, input: object = None) -> object:
    run = await engine.start_run(agent, input)
    done = await engine.wait(run.id, timeout=20)
    assert done.status is culm.RunStatus.COMPLETED, done.state.error
    return done.state.output


class TestDepth:
    """How deep a tree may grow."""

    async def test_the_engine_limit(self, make_engine: EngineFactory) -> None:
        async with make_engine(app, spawn_max_depth=2) as engine:
            root = await engine.start_run("chain", 3)
            done = await engine.wait(root.id, timeout=10)
            # depth 2 may not spawn: it fails with the refusal, and its parents say so
            tree = [node.run for node in (await engine.run_tree(root.id)).walk()]
            assert [r.status for r in tree] == [culm.RunStatus.COMPLETED] * 2 + [
                culm.RunStatus.FAILED
            ]
            assert tree[2].state.error == (
                f"SpawnRefused: run {tree[2].id} is at depth 2: a child would pass the depth "
                "limit of 2"
            )
            assert done.state.output == {"child": "completed", "error": None}

    async def test_the_default_is_four_levels(self, engine: culm.Engine) -> None:
        root = await engine.start_run("chain", 5)
        await engine.wait(root.id, timeout=10)
        tree = [node.run for node in (await engine.run_tree(root.id)).walk()]
        assert len(tree) == 5  # the root and four levels below it
        assert tree[-1].state.error is not None and "depth limit of 4" in tree[-1].state.error

    async def test_an_agent_limit_tighter_than_the_engine(self, engine: culm.Engine) -> None:
        root = await engine.start_run("shallow", 3)
        done = await engine.wait(root.id, timeout=10)
        (child,) = await engine.children(root.id)
        assert done.state.output == f"failed: SpawnRefused: run {child.id} is at depth 1: " + (
            "a child would pass the depth limit of 1"
        )


class TestChildren:
    """How many children one run may have, at once and in all."""

    async def test_live_children(self, make_engine: EngineFactory) -> None:
        async with make_engine(app, spawn_max_live_children=2) as engine:
            # both children wait on a gate that the parent opens after its third try
            leaf = {"gate": "live", "value": 1}
            run = await engine.start_run("fan", {"n": 3, "leaf": leaf, "release": "live"})
            done = await engine.wait(run.id, timeout=10)
        assert done.state.output == {
            "started": 2,
            "refused": f"run {run.id} has 2 live children, the most it may have at once: "
            "wait for one to end",
            "results": [1, 1],
        }

    async def test_children_in_all(self, make_engine: EngineFactory) -> None:
        async with make_engine(app, spawn_max_children=3) as engine:
            output = await output_of(engine, "fan", {"n": 5, "leaf": {"value": 2}})
        assert output["started"] == 3
        assert output["refused"].endswith("has started 3 children, the most it may")

    async def test_which_agents(self, engine: culm.Engine) -> None:
        assert await output_of(engine, "picky", "leaf") == "ok"
        run = await engine.start_run("picky", "mid")
        done = await engine.wait(run.id, timeout=10)
        assert done.state.error == "SpawnRefused: picky may not start 'mid' (it may start: leaf)"
        assert await engine.children(run.id) == []

    async def test_unknown_agents_and_bad_input_start_nothing(self, engine: culm.Engine) -> None:
        for agent, leaf in (("nobody", {}), ("leaf", "not a dict")):
            run = await engine.start_run("fan", {"n": 1, "agent": agent, "leaf": leaf})
            done = await engine.wait(run.id, timeout=10)
            assert done.status is culm.RunStatus.FAILED
            assert await engine.children(run.id) == []
            assert "child.started" not in [e.type for e in await engine.events(run.id)]


class TestWatchdog:
    """A stuck child is cancelled with reason ``timeout``; a busy one is left alone."""

    async def test_too_long_in_all(self, engine: culm.Engine) -> None:
        output = await output_of(engine, "impatient", {"hold": True})
        assert output["status"] == "cancelled"
        assert output["error"] == "cancelled by watchdog: timeout"
        run_id = output["run_id"]
        child = await engine.get_run(run_id)
        parent_events = await engine.events(child.parent_run_id or "")
        report = next(e for e in parent_events if e.type == "child.completed")
        assert report.data["timeout"] == "ran longer than 0.3s"
        cancelled = (await engine.events(run_id))[-1]
        assert (cancelled.data["by"], cancelled.data["reason"]) == ("watchdog", "timeout")

    async def test_too_long_without_an_event(self, engine: culm.Engine) -> None:
        output = await output_of(engine, "watchful", {"ticks": 1, "hold": True})
        assert output["status"] == "cancelled"
        assert output["error"] == "cancelled by watchdog: timeout"

    async def test_a_child_busy_below_is_not_idle(self, engine: culm.Engine) -> None:
        # the relay emits nothing while its own child ticks for longer than the idle limit
        work = {"agent": "relay", "ticks": 40, "delay": 0.04, "value": "done"}
        output = await output_of(engine, "watchful", work)
        assert (output["status"], output["output"]) == ("completed", "done")

    async def test_the_engine_setting(self, make_engine: EngineFactory) -> None:
        async with make_engine(app, spawn_child_timeout=0.2) as engine:
            output = await output_of(engine, "fan", {"n": 1, "leaf": {"hold": True}})
        assert output == {"started": 1, "refused": None, "results": [None]}
