"""culm.testing: scripted models stand in for real ones; real ones are blocked."""

from __future__ import annotations

import pytest

import culm
import culm.testing
from culm.llm import ModelRequest, TransientModelError, Usage
from culm.testing import Reply, ScriptedModel, call
from tests.agent.conftest import FAST_RETRY
from tests.agent.events import all_events, check_rounds, events_until, types
from tests.conftest import EngineFactory


def helper_app() -> culm.App:
    app = culm.App()

    @app.tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}"

    app.add_agent("helper", model="openai:gpt-4o-mini", tools=[get_weather], retry=FAST_RETRY)
    return app


async def test_a_scripted_model_drives_the_loop(make_engine: EngineFactory) -> None:
    app = helper_app()
    model = ScriptedModel(
        Reply(calls=[call("get_weather", city="Paris")], usage=Usage(10, 2)),
        lambda request: f"Saw {request.messages[-1]['content']}.",
    )
    async with make_engine(app) as engine:
        with culm.testing.override_model(app, "helper", model):
            run = await engine.start_run("helper", "Weather in Paris?")
            events = await all_events(engine, run.id)
    check_rounds(events)
    assert events[-1].data["output"]["text"] == "Saw sunny in Paris."
    assert [len(r.messages) for r in model.requests] == [1, 3]
    assert all(isinstance(r, ModelRequest) for r in model.requests)


async def test_real_models_are_blocked_in_this_suite(make_engine: EngineFactory) -> None:
    assert not culm.testing.model_requests_allowed()
    async with make_engine(helper_app()) as engine:
        run = await engine.start_run("helper", "Hi")
        events = await all_events(engine, run.id)
    assert events[-1].type == "run.failed"
    assert (
        events[-1]
        .data["error"]
        .startswith("ModelRequestsBlocked: a request to openai:gpt-4o-mini was blocked")
    )


async def test_scripted_errors_and_running_out(make_engine: EngineFactory) -> None:
    app = helper_app()
    model = ScriptedModel(Reply(error=TransientModelError("busy")), "Fine.")
    async with make_engine(app) as engine:
        with culm.testing.override_model(app, "helper", model):
            run = await engine.start_run("helper", "Hi")
            assert (await all_events(engine, run.id))[-1].data["output"]["text"] == "Fine."
            run = await engine.start_run("helper", "Again", session_id=run.session_id)
            last = (await all_events(engine, run.id))[-1]
    assert last.type == "run.failed"
    assert last.data["error"] == "ModelError: scripted has no reply left for call 3"


async def test_cancel_between_chunks(make_engine: EngineFactory) -> None:
    app = helper_app()
    model = ScriptedModel("one two three four five six seven", chunk_delay=0.05)
    async with make_engine(app) as engine:
        with culm.testing.override_model(app, "helper", model):
            run = await engine.start_run("helper", "Count")
            await events_until(engine, run.id, "message.delta")
            await engine.cancel(run.id)
            events = await all_events(engine, run.id)
    assert events[-1].type == "run.cancelled" and not events[-1].data["forced"]
    assert types(events, deltas=True).count("message.delta") < 7


def test_override_refuses_function_agents() -> None:
    app = culm.App()

    @app.agent
    async def plain(run: culm.RunContext, input: str) -> str:
        return input

    with (
        pytest.raises(TypeError, match="not a model agent"),
        culm.testing.override_model(app, "plain", ScriptedModel()),
    ):
        pass
