"""Cancelling in a tree: down from any run, never up; and no child outlives its parent."""

from __future__ import annotations

import culm
from tests.conftest import EngineFactory
from tests.spawn.agents import app
from tests.spawn.conftest import ended, of_run, read_tree, started


async def chain_of_three(engine: culm.Engine) -> list[culm.Run]:
    """Root, child and grandchild of ``chain``, all running (the grandchild holds)."""
    root = await engine.start_run("chain", 2)
    await read_tree(engine, root.session_id, started(3))
    return [node.run for node in (await engine.run_tree(root.id)).walk()]


def terminal(events: list[culm.Event], run_id: str) -> culm.Event:
    return of_run(events, run_id)[-1]


class TestCascade:
    """Cancelling a run cancels everything below it, each end naming the cause."""

    async def test_at_the_root(self, engine: culm.Engine) -> None:
        root, child, grandchild = await chain_of_three(engine)
        await engine.cancel(root.id, by="ann", reason="enough")
        seen = await read_tree(engine, root.session_id, ended(root.id))
        ends = [terminal(seen, r.id) for r in (root, child, grandchild)]
        assert [(e.type, e.data["by"], e.data["reason"]) for e in ends] == [
            ("run.cancelled", "ann", "enough"),
            ("run.cancelled", "ann", f"parent run {root.id} was cancelled"),
            ("run.cancelled", "ann", f"parent run {child.id} was cancelled"),
        ]
        assert ends[2].pos < ends[1].pos < ends[0].pos  # each child ends before its parent
        for parent, kid in ((root, child), (child, grandchild)):
            reports = [e for e in of_run(seen, parent.id) if e.type == "child.completed"]
            assert [(r.data["run_id"], r.data["status"]) for r in reports] == [
                (kid.id, "cancelled")
            ]
        assert [r.status for r in await self.statuses(engine, root)] == 3 * [
            culm.RunStatus.CANCELLED
        ]

    async def test_in_the_middle_the_parent_goes_on(self, engine: culm.Engine) -> None:
        root, child, grandchild = await chain_of_three(engine)
        await engine.cancel(child.id, reason="not this one")
        done = await engine.wait(root.id, timeout=10)
        assert done.status is culm.RunStatus.COMPLETED
        assert done.state.output == {
            "child": "cancelled",
            "error": "cancelled by user: not this one",
        }
        grand = await engine.get_run(grandchild.id)
        assert grand.state.error == f"cancelled by user: parent run {child.id} was cancelled"

    async def test_at_the_bottom_only_that_run_stops(self, engine: culm.Engine) -> None:
        root, child, grandchild = await chain_of_three(engine)
        await engine.cancel(grandchild.id)
        done = await engine.wait(root.id, timeout=10)
        assert done.status is culm.RunStatus.COMPLETED
        assert done.state.output == {"child": "completed", "error": None}
        middle = await engine.get_run(child.id)
        assert middle.state.output == {"child": "cancelled", "error": "cancelled by user"}

    async def test_cancelling_twice_changes_nothing(self, engine: culm.Engine) -> None:
        root, child, _ = await chain_of_three(engine)
        await engine.cancel(root.id, by="ann")
        await engine.cancel(root.id, by="bob")
        await engine.wait(root.id, timeout=10)
        assert [r.state.error for r in await self.statuses(engine, root)] == [
            "cancelled by ann",
            f"cancelled by ann: parent run {root.id} was cancelled",
            f"cancelled by ann: parent run {child.id} was cancelled",
        ]

    @staticmethod
    async def statuses(engine: culm.Engine, root: culm.Run) -> list[culm.Run]:
        return [node.run for node in (await engine.run_tree(root.id)).walk()]


class TestNoOrphans:
    """A parent that ends any way but by cancellation still stops its children first, so
    no child outlives its parent, and the parent's stream reports each child's end."""

    async def test_a_parent_that_completes(self, engine: culm.Engine) -> None:
        run = await engine.start_run("leaver")
        done = await engine.wait(run.id, timeout=10)
        assert done.status is culm.RunStatus.COMPLETED
        (child,) = await engine.children(run.id)
        assert child.state.error == f"cancelled by run:{run.id}: parent run {run.id} completed"
        types = [e.type for e in await engine.events(run.id)]
        assert types[-3:] == ["child.started", "child.completed", "run.completed"]

    async def test_a_parent_that_fails(self, engine: culm.Engine) -> None:
        run = await engine.start_run("dropper")
        done = await engine.wait(run.id, timeout=10)
        assert done.status is culm.RunStatus.FAILED
        (child,) = await engine.children(run.id)
        assert child.state.error == f"cancelled by run:{run.id}: parent run {run.id} failed"
        types = [e.type for e in await engine.events(run.id)]
        assert types[-2:] == ["child.completed", "run.failed"]


class TestCancelAChild:
    """Cancelling one child leaves its parent running, and tells it."""

    async def test_the_parent_hears_and_goes_on(self, engine: culm.Engine) -> None:
        run = await engine.start_run("fan", {"n": 2, "leaf": {"hold": True, "value": 1}})
        await read_tree(engine, run.session_id, started(3))
        first, second = sorted(await engine.children(run.id), key=lambda r: r.id)
        await engine.cancel(first.id, reason="one is enough")
        seen = await read_tree(
            engine,
            run.session_id,
            lambda events: any(
                e.type == "child.completed" and e.data["run_id"] == first.id for e in events
            ),
        )
        report = next(e for e in seen if e.type == "child.completed")
        assert report.data["status"] == "cancelled"
        assert report.data["error"] == "cancelled by user: one is enough"
        assert (await engine.get_run(run.id)).status is culm.RunStatus.RUNNING
        await engine.cancel(second.id)
        done = await engine.wait(run.id, timeout=10)
        assert done.status is culm.RunStatus.COMPLETED
        assert done.state.output == {"started": 2, "refused": None, "results": [None, None]}

    async def test_a_child_started_from_outside_is_cancelled_with_its_parent(
        self, engine: culm.Engine
    ) -> None:
        parent = await engine.start_run("holder")
        await read_tree(engine, parent.session_id, started(1))
        child = await engine.spawn(parent.id, "leaf", {"hold": True}, by="ann")
        assert (child.trigger, child.parent_run_id) == (culm.Trigger.SPAWN, parent.id)
        await read_tree(engine, parent.session_id, started(2))
        await engine.cancel(parent.id, by="bob")
        await engine.wait(parent.id, timeout=10)
        ended_child = await engine.get_run(child.id)
        assert ended_child.state.error == f"cancelled by bob: parent run {parent.id} was cancelled"


class TestShutdown:
    """Closing the engine interrupts a whole tree, children before parents."""

    async def test_every_run_of_the_tree_is_interrupted(self, make_engine: EngineFactory) -> None:
        async with make_engine(app) as engine:
            root, child, grandchild = await chain_of_three(engine)
        async with make_engine(app) as engine:
            runs = [await engine.get_run(r.id) for r in (root, child, grandchild)]
            assert [r.status for r in runs] == 3 * [culm.RunStatus.INTERRUPTED]
            events = await engine.events(root.id)
            assert [e.type for e in events[-2:]] == ["child.completed", "run.interrupted"]
            assert events[-2].data["status"] == "interrupted"
