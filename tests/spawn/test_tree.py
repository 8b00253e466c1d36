"""A tree of runs, seen from its root's session stream: complete, in order, each event once."""

from __future__ import annotations

from collections import Counter
from contextlib import aclosing

import culm
from tests.conftest import EngineFactory
from tests.spawn.agents import app, gate
from tests.spawn.conftest import ended, of_run, read_tree, started


async def assert_whole_tree(engine: culm.Engine, root: culm.Run, seen: list[culm.Event]) -> None:
    """``seen`` (a session stream) holds every event of every run of the tree exactly once,
    in log order, each tagged with its run's parent, children announced before they start
    and reported after they end."""
    nodes = (await engine.run_tree(root.id)).walk()
    runs = {node.run.id: node.run for node in nodes}
    stored = {run_id: await engine.events(run_id) for run_id in runs}

    keys = [(e.run_id, e.seq) for e in seen]
    assert len(keys) == len(set(keys)), "an event came twice"
    assert set(keys) == {(e.run_id, e.seq) for page in stored.values() for e in page}
    positions = [e.pos for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for run_id, page in stored.items():
        mine = of_run(seen, run_id)
        assert [e.seq for e in mine] == list(range(1, len(page) + 1))
        assert [(e.type, e.data, e.pos) for e in mine] == [(e.type, e.data, e.pos) for e in page]
        assert {e.parent_run_id for e in mine} == {runs[run_id].parent_run_id}
        assert sum(e.terminal for e in mine) == 1 and mine[-1].terminal

    for run_id, run in runs.items():
        if run.parent_run_id is None:
            continue
        assert run.trigger is culm.Trigger.SPAWN
        parent = of_run(seen, run.parent_run_id)
        announced = [e for e in parent if e.type == "child.started" and e.data["run_id"] == run_id]
        reported = [e for e in parent if e.type == "child.completed" and e.data["run_id"] == run_id]
        assert len(announced) == 1 and len(reported) == 1
        mine = of_run(seen, run_id)
        assert announced[0].pos < mine[0].pos
        assert reported[0].pos > mine[-1].pos
        assert reported[0].pos < parent[-1].pos  # before the parent's own end
        assert reported[0].data["status"] == run.status.value
        assert announced[0].data["session_id"] == run.session_id
        session = await engine.get_session(run.session_id)
        assert session.parent_id == runs[run.parent_run_id].session_id


class TestThreeLevels:
    """A root that waits for one child, for all, for the first, and for all unless one
    fails, with grandchildren below: its session stream shows the whole tree."""

    async def test_every_wait_and_the_whole_stream(self, engine: culm.Engine) -> None:
        root = await engine.start_run("root")
        seen = await read_tree(engine, root.session_id, ended(root.id))
        done = await engine.wait(root.id, timeout=10)
        assert done.status is culm.RunStatus.COMPLETED, done.state.error
        cancelled = done.state.output["all_or_fail"][0]
        assert done.state.output == {
            "one": ["m.1", "m.2"],
            "all": ["a", "b"],
            "first": ["fast"],
            "later": "slow",
            "all_or_fail": [cancelled, ["failed", "RuntimeError: no luck"]],
        }
        assert cancelled[0] == "cancelled"
        assert cancelled[1].startswith(f"cancelled by run:{root.id}: its sibling ")
        await assert_whole_tree(engine, root, seen)

        tree = await engine.run_tree(root.id)
        assert [n.run.agent for n in tree.walk()] == ["root", "mid", "leaf", "leaf"] + 6 * ["leaf"]
        assert [len(n.children) for n in tree.walk()] == [7, 2] + 8 * [0]
        root_types = Counter(e.type for e in of_run(seen, root.id))
        assert root_types["child.started"] == root_types["child.completed"] == 7

    async def test_a_late_subscriber_reads_the_same_tree(self, engine: culm.Engine) -> None:
        root = await engine.start_run("root")
        await engine.wait(root.id, timeout=30)
        seen = await read_tree(engine, root.session_id, ended(root.id))
        await assert_whole_tree(engine, root, seen)
        page = await engine.session_events(root.session_id, limit=10_000)
        assert [(e.run_id, e.seq) for e in page] == [(e.run_id, e.seq) for e in seen]

    async def test_a_child_session_streams_its_own_subtree(self, engine: culm.Engine) -> None:
        root = await engine.start_run("root")
        await engine.wait(root.id, timeout=30)
        mid = next(n.run for n in (await engine.run_tree(root.id)).walk() if n.run.agent == "mid")
        seen = await read_tree(engine, mid.session_id, ended(mid.id))
        assert {e.run_id for e in seen} == {
            n.run.id for n in (await engine.run_tree(mid.id)).walk()
        }

    async def test_children_run_at_the_same_time(self, engine: culm.Engine) -> None:
        run = await engine.start_run("fan", {"n": 3, "leaf": {"value": 1, "gate": "together"}})
        await read_tree(engine, run.session_id, started(4))  # all three wait on one gate
        children = await engine.children(run.id)
        assert [c.status for c in children] == 3 * [culm.RunStatus.RUNNING]
        assert {c.trigger for c in children} == {culm.Trigger.SPAWN}
        assert {c.parent_run_id for c in children} == {run.id}
        gate("together").set()
        done = await engine.wait(run.id, timeout=10)
        assert done.state.output == {"started": 3, "refused": None, "results": [1, 1, 1]}


class TestGrowingStreams:
    """The stream takes in each child's session when the child is announced, not when it
    next polls: nothing is missed even when it lags and never polls."""

    async def test_many_children_a_tiny_buffer_and_no_polling(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine(app, subscriber_buffer=2, idle_poll_seconds=60) as engine:
            fan = {"n": 12, "leaf": {"ticks": 20, "value": 0}}
            root = await engine.start_run("fan", fan)
            seen = await read_tree(engine, root.session_id, ended(root.id))
            await assert_whole_tree(engine, root, seen)
            assert len({e.run_id for e in seen}) == 13

    async def test_joining_midway(self, engine: culm.Engine) -> None:
        root = await engine.start_run("root")
        first = await read_tree(engine, root.session_id, started(3))
        cursor = first[-1].pos
        rest: list[culm.Event] = []
        async with aclosing(engine.subscribe_session(root.session_id, after=cursor)) as stream:
            async for batch in stream:
                rest.extend(batch)
                if ended(root.id)(rest):
                    break
        assert all(e.pos > cursor for e in rest)
        whole = await read_tree(engine, root.session_id, ended(root.id))
        assert [e.pos for e in whole if e.pos > cursor] == [e.pos for e in rest]


class TestChildEvents:
    """What the parent's stream says about a child."""

    async def test_started_and_completed_with_a_bounded_summary(self, engine: culm.Engine) -> None:
        run = await engine.start_run("fan", {"n": 1, "leaf": {"value": "x" * 5000}})
        done = await engine.wait(run.id, timeout=10)
        child = (await engine.children(run.id))[0]
        events = [e for e in await engine.events(run.id) if e.type.startswith("child.")]
        assert [(e.type, e.data) for e in events] == [
            (
                "child.started",
                {
                    "run_id": child.id,
                    "session_id": child.session_id,
                    "agent": "leaf",
                    "depth": 1,
                    "budget": {"tokens": None, "rounds": None},
                },
            ),
            (
                "child.completed",
                {
                    "run_id": child.id,
                    "session_id": child.session_id,
                    "agent": "leaf",
                    "status": "completed",
                    "summary": "x" * 499 + "…",
                    "error": None,
                    "usage": None,
                },
            ),
        ]
        assert done.state.output["results"] == ["x" * 5000]  # the result itself is whole
