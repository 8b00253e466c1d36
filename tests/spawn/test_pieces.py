"""The pure parts of spawn: usage sums, summaries, budgets, limits, trees, and the waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import culm
from culm.agent.spawn import Child, ChildResult, WaitMode, wait_results
from culm.events import Event
from culm.models import RunState, RunStatus, Trigger, add_usage
from culm.projection import replay
from culm.runtime.limits import effective_limits, overdue_why, watchdog_wait
from culm.runtime.summary import summarize
from culm.tree import build_tree

U = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@pytest.mark.parametrize(
    ("a", "b", "total"),
    [
        (None, None, None),
        (U, None, U),
        (None, U, U),
        (U, U, {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}),
        (
            {"cost": 0.5, "model": "m"},
            {"cost": 0.25, "calls": 1},
            {"cost": 0.75, "model": "m", "calls": 1},
        ),
    ],
)
def test_usages_add_up_key_by_key(a: Any, b: Any, total: Any) -> None:
    assert add_usage(a, b) == total


@pytest.mark.parametrize(
    ("value", "summary"),
    [
        (None, None),
        ("short", "short"),
        ({"a": [1, 2]}, '{"a":[1,2]}'),
        ("x" * 600, "x" * 499 + "…"),
    ],
)
def test_summaries_are_bounded(value: Any, summary: str | None) -> None:
    assert summarize(value) == summary


def test_a_budget_cap_is_the_tighter_of_each_limit() -> None:
    assert culm.Budget(100, None).cap(culm.Budget(None, 3)) == culm.Budget(100, 3)
    assert culm.Budget(100, 5).cap(culm.Budget(50, 8)) == culm.Budget(50, 5)
    assert culm.Budget().cap(culm.Budget()) == culm.Budget()


def test_agent_and_engine_limits_combine_to_the_tighter() -> None:
    settings = culm.Settings(spawn_max_depth=4, spawn_max_live_children=16, spawn_child_timeout=60)
    agent = culm.SpawnLimits(max_depth=2, max_live_children=None, child_idle_timeout=5)
    assert effective_limits(agent, settings) == culm.SpawnLimits(
        max_depth=2,
        max_live_children=16,
        max_children=100,
        child_timeout=60,
        child_idle_timeout=5,
    )


@pytest.mark.parametrize(
    ("limits", "now", "quiet_since", "wait", "why"),
    [
        (culm.SpawnLimits(), 50.0, 40.0, None, None),
        (culm.SpawnLimits(child_timeout=30), 10.0, None, 20.0, None),
        (culm.SpawnLimits(child_timeout=30), 31.0, 31.0, 0.0, "ran longer than 30s"),
        (culm.SpawnLimits(child_idle_timeout=5), 10.0, 8.0, 3.0, None),
        (culm.SpawnLimits(child_idle_timeout=5), 14.0, 8.0, 0.0, "no event for 5s"),
        (culm.SpawnLimits(child_idle_timeout=5), 3.0, None, None, None),  # not running here
        (culm.SpawnLimits(child_idle_timeout=5), 4.0, 0.0, 1.0, None),  # quiet since it began
        (culm.SpawnLimits(child_timeout=30, child_idle_timeout=5), 29.0, 28.0, 1.0, None),
    ],
)
def test_when_the_watchdog_looks_again(
    limits: culm.SpawnLimits, now: float, quiet_since: float | None, wait: Any, why: Any
) -> None:
    """A child started at t=0, looked at ``now``, its subtree quiet since ``quiet_since``."""
    started_at = 0.0
    assert watchdog_wait(limits, now, started_at, quiet_since) == wait
    if why is not None:
        assert overdue_why(limits, now, started_at) == why


def test_child_completed_events_roll_usage_up_into_the_parent_state() -> None:
    def event(seq: int, type: str, data: dict[str, Any]) -> Event:
        return Event(seq, "run_p", "ses_p", type, data)

    state = replay(
        [
            event(1, "run.queued", {}),
            event(2, "budget.updated", {"usage": U}),
            event(3, "child.completed", {"status": "completed", "usage": U}),
            event(4, "child.completed", {"status": "failed", "usage": None}),
            event(5, "child.completed", {"status": "completed", "usage": U}),
        ]
    )
    assert state.usage == U
    assert state.children_usage == add_usage(U, U)
    assert state.tree_usage == {"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45}


def run(run_id: str, parent: str | None, usage: dict[str, int] | None = None) -> culm.Run:
    state = RunState(status=RunStatus.COMPLETED, usage=usage)
    return culm.Run(run_id, "ses", "t", "a", None, Trigger.SPAWN, 0.0, state, parent_run_id=parent)


def test_a_tree_nests_runs_by_parent_and_adds_up_live_usage() -> None:
    tree = build_tree(
        [run("r", None, U), run("c2", "r"), run("c1", "r", U), run("g", "c1", U), run("x", "z")]
    )
    assert [(n.run.id, [c.run.id for c in n.children]) for n in tree.walk()] == [
        ("r", ["c1", "c2"]),
        ("c1", ["g"]),
        ("g", []),
        ("c2", []),
    ]
    assert tree.tree_usage == {"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45}
    assert tree.to_dict()["children"][0]["tree_usage"] == add_usage(U, U)


class FakeSpawner:
    """Children whose ends the test decides; cancelling one ends it ``cancelled``."""

    def __init__(self, *ids: str) -> None:
        loop = asyncio.get_running_loop()
        self.futures = {i: loop.create_future() for i in ids}
        self.cancelled: list[str] = []

    def end(self, run_id: str, status: RunStatus) -> None:
        self.futures[run_id].set_result(ChildResult(run_id, "s", "a", status, output=run_id))

    async def spawn(self, agent: str, input: Any, budget: culm.Budget) -> Child:
        raise NotImplementedError

    def outcome(self, run_id: str) -> asyncio.Future[ChildResult]:
        return self.futures[run_id]

    async def cancel(self, run_id: str, reason: str) -> None:
        self.cancelled.append(run_id)
        if not self.futures[run_id].done():
            self.end(run_id, RunStatus.CANCELLED)

    def children(self) -> list[Child]:
        return [Child(i, "s", "a") for i in self.futures]

    def children_tokens(self) -> int:
        return 0


class TestWaits:
    """Each way of waiting returns the results it promises, in the order asked."""

    async def test_all_waits_for_every_end_whatever_it_is(self) -> None:
        spawner = FakeSpawner("a", "b")
        waiting = asyncio.ensure_future(wait_results(spawner, ["a", "b"], WaitMode.ALL))
        spawner.end("b", RunStatus.FAILED)
        await asyncio.sleep(0)
        assert not waiting.done()
        spawner.end("a", RunStatus.COMPLETED)
        assert [(r.run_id, r.status) for r in await waiting] == [
            ("a", RunStatus.COMPLETED),
            ("b", RunStatus.FAILED),
        ]

    async def test_first_returns_the_first_end_and_leaves_the_rest(self) -> None:
        spawner = FakeSpawner("a", "b")
        waiting = asyncio.ensure_future(wait_results(spawner, ["a", "b"], WaitMode.FIRST))
        spawner.end("b", RunStatus.COMPLETED)
        assert [r.run_id for r in await waiting] == ["b"]
        assert spawner.cancelled == [] and not spawner.futures["a"].done()

    async def test_all_or_fail_cancels_the_rest_at_the_first_failure(self) -> None:
        spawner = FakeSpawner("a", "b", "c")
        waiting = asyncio.ensure_future(
            wait_results(spawner, ["a", "b", "c"], WaitMode.ALL_OR_FAIL)
        )
        spawner.end("a", RunStatus.COMPLETED)
        await asyncio.sleep(0)
        spawner.end("b", RunStatus.FAILED)
        results = await waiting
        assert [(r.run_id, r.status) for r in results] == [
            ("a", RunStatus.COMPLETED),
            ("b", RunStatus.FAILED),
            ("c", RunStatus.CANCELLED),
        ]
        assert spawner.cancelled == ["c"]

    async def test_all_or_fail_when_all_complete(self) -> None:
        spawner = FakeSpawner("a", "b")
        spawner.end("b", RunStatus.COMPLETED)
        spawner.end("a", RunStatus.COMPLETED)
        results = await wait_results(spawner, ["a", "b"], WaitMode.ALL_OR_FAIL)
        assert [r.ok for r in results] == [True, True] and spawner.cancelled == []

    async def test_nothing_to_wait_for(self) -> None:
        assert await wait_results(FakeSpawner(), [], WaitMode.FIRST) == []


async def test_a_context_outside_an_engine_cannot_spawn() -> None:
    async def emit(type: str, data: dict[str, Any]) -> None:
        pass

    context = culm.RunContext(
        run_id="r", session_id="s", tenant="t", agent="a", emit=emit,
        cancel_token=culm.agent.context.CancelToken(),
    )  # fmt: skip
    with pytest.raises(culm.SpawnRefused, match="not started by an engine"):
        await context.spawn("leaf")
    assert context.children == [] and context.children_tokens() == 0
