"""Budgets flow down a tree and usage rolls up; model agents spawn through the tools."""

from __future__ import annotations

import json
from typing import Any

import culm
from culm.llm import ModelRequest, Usage
from culm.testing import Reply, ScriptedModel, call
from tests.conftest import EngineFactory

Script = list[Any]


def make_app(boss: Script, worker: Script) -> tuple[culm.App, list[ModelRequest]]:
    """A ``boss`` model agent (1,000 tokens, 4 rounds) that may spawn ``worker`` (10,000
    tokens, 8 rounds), each answering from its script; the worker's requests are kept."""
    app = culm.App()
    worker_model = ScriptedModel(*worker)
    app.add_agent(
        "boss",
        model=ScriptedModel(*boss),
        tools=["spawn_agent", "wait_children"],
        token_budget=1000,
        max_rounds=4,
    )
    app.add_agent("worker", model=worker_model, token_budget=10_000, max_rounds=8)

    @app.agent
    async def delegate(run: culm.RunContext, input: str) -> Any:
        result = await run.spawn("worker", "go", wait=True, token_budget=500, max_rounds=2)
        return result.to_dict()

    return app, worker_model.requests


async def finished(engine: culm.Engine, agent: str) -> culm.Run:
    run = await engine.start_run(agent, "start")
    done = await engine.wait(run.id, timeout=10)
    assert done.status is culm.RunStatus.COMPLETED, done.state.error
    return done


def tool_results(events: list[culm.Event]) -> list[tuple[str, Any]]:
    return [
        (e.type, e.data.get("result", e.data.get("error")))
        for e in events
        if e.type in ("tool.completed", "tool.failed")
    ]


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class TestBudgetFlowsDown:
    """A child gets at most what its parent has left, tokens and rounds."""

    async def test_a_model_agent_grants_what_it_has_left(self, make_engine: EngineFactory) -> None:
        app, worker_requests = make_app(
            [
                Reply(
                    calls=[call("spawn_agent", agent="worker", input="go")], usage=Usage(100, 20)
                ),
                Reply("all done", usage=Usage(300, 10)),
            ],
            [Reply("worked", usage=Usage(200, 30))],
        )
        async with make_engine(app) as engine:
            boss = await finished(engine, "boss")
            events = await engine.events(boss.id)
            (child,) = await engine.children(boss.id)
            tree = await engine.run_tree(boss.id)

        started = next(e for e in events if e.type == "child.started")
        assert started.data["budget"] == {"tokens": 1000 - 120, "rounds": 4 - 1}
        cap = worker_requests[0].max_tokens
        assert cap is not None and 0 < cap < 880  # the worker's own 10,000 does not apply
        [(kind, result)] = tool_results(events)
        assert kind == "tool.completed"
        assert (result["run_id"], result["status"]) == (child.id, "completed")
        assert result["output"]["text"] == "worked"
        # the boss's second call had what the worker spent taken from its budget
        last_budget = [e for e in events if e.type == "budget.updated"][-1]
        assert last_budget.data["budget_left"] == 1000 - 430 - 230

        assert child.state.usage == child.state.tree_usage == usage(200, 30)
        assert boss.state.usage == usage(400, 30)
        assert boss.state.tree_usage == usage(600, 60)
        assert boss.to_dict()["tree_usage"] == usage(600, 60)
        assert tree.tree_usage == usage(600, 60)

    async def test_a_function_agent_grants_what_it_asks(self, make_engine: EngineFactory) -> None:
        app, worker_requests = make_app([], [Reply("worked", usage=Usage(40, 5))])
        async with make_engine(app) as engine:
            run = await finished(engine, "delegate")
            started = next(e for e in await engine.events(run.id) if e.type == "child.started")
        assert started.data["budget"] == {"tokens": 500, "rounds": 2}
        cap = worker_requests[0].max_tokens
        assert cap is not None and cap < 500
        assert run.state.output["status"] == "completed"
        assert run.state.output["usage"] == usage(40, 5)
        assert run.state.tree_usage == usage(40, 5)  # its own is none

    async def test_nothing_left_is_a_tool_error_not_a_crash(
        self, make_engine: EngineFactory
    ) -> None:
        app, _ = make_app(
            [Reply(calls=[call("spawn_agent", agent="worker")], usage=Usage(900, 100))], []
        )
        async with make_engine(app) as engine:
            boss = await finished(engine, "boss")
            events = await engine.events(boss.id)
            assert await engine.children(boss.id) == []
        assert tool_results(events) == [
            (
                "tool.failed",
                f"SpawnRefused: run {boss.id} has no token budget left for a child",
            )
        ]
        assert boss.state.output["stop_reason"] == "budget_exhausted"


class TestTools:
    """``spawn_agent`` without waiting, then ``wait_children``: results as tool results."""

    async def test_start_two_then_collect_them(self, make_engine: EngineFactory) -> None:
        spawn = [
            call("spawn_agent", agent="worker", input="one", wait=False),
            call("spawn_agent", agent="worker", input="two", wait=False),
        ]

        def answer(request: ModelRequest) -> str:
            return f"did {request.messages[-1]['content']}"

        app, _ = make_app(
            [
                Reply(calls=spawn, usage=Usage(10, 10)),
                Reply(calls=[call("wait_children", mode="all")], usage=Usage(10, 10)),
                Reply("both done", usage=Usage(10, 10)),
            ],
            [answer, answer],
        )
        async with make_engine(app) as engine:
            boss = await finished(engine, "boss")
            events = await engine.events(boss.id)
            children = sorted(await engine.children(boss.id), key=lambda r: r.id)
        results = tool_results(events)
        assert [kind for kind, _ in results] == ["tool.completed"] * 3
        assert sorted((r["run_id"], r["status"]) for _, r in results[:2]) == [
            (c.id, "running") for c in children
        ]
        collected = results[2][1]
        # in the order they were started, which their ids keep
        assert [(r["run_id"], r["status"]) for r in collected] == [
            (c.id, "completed") for c in children
        ]
        assert sorted(r["output"]["text"] for r in collected) == ["did one", "did two"]
        assert boss.state.output["text"] == "both done"
        assert json.dumps(collected)  # what the model reads is plain JSON

    async def test_unknown_agent_is_a_tool_error(self, make_engine: EngineFactory) -> None:
        app, _ = make_app([Reply(calls=[call("spawn_agent", agent="ghost")]), Reply("sorry")], [])
        async with make_engine(app) as engine:
            boss = await finished(engine, "boss")
            events = await engine.events(boss.id)
        [(kind, error)] = tool_results(events)
        assert kind == "tool.failed"
        assert error.startswith("NotFound: no agent named 'ghost'")
