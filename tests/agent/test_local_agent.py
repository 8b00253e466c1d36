"""Model agents on the real local model (SmolLM2-135M through llama-cpp-python).

The model is tiny: its words are never asserted, only the shape of what it did. Where a
test needs a tool call, the agent forces it with ``tool_choice``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import culm
import culm.testing
from tests.agent.events import all_events, check_rounds, events_until, types
from tests.conftest import EngineFactory
from tests.local_model import require_local_model


@pytest.fixture(autouse=True)
def local_model() -> Iterator[None]:
    require_local_model()
    with culm.testing.allow_model_requests():
        yield


def local_app(**options: object) -> culm.App:
    app = culm.App()

    @app.tool
    def get_weather(city: str) -> str:
        """Current weather for a city.

        Args:
            city: The city's name.
        """
        return f"sunny, 21 C in {city}"

    options.setdefault("model_settings", {"max_tokens": 48})  # keep the tests quick
    app.add_agent(
        "assistant",
        model="local:smollm2",
        instructions="You are a helpful assistant.",
        tools=[get_weather],
        **options,  # type: ignore[arg-type]
    )
    return app


async def test_a_forced_tool_call_then_an_answer(make_engine: EngineFactory) -> None:
    app = local_app(tool_choice="get_weather", max_rounds=1)
    async with make_engine(app) as engine:
        run = await engine.start_run("assistant", "What is the weather in Paris?")
        events = await all_events(engine, run.id, timeout=90)
        done = await engine.get_run(run.id)
    check_rounds(events)
    assert types(events) == [
        "run.queued",
        "run.started",
        "round.started",
        "message.completed",
        "budget.updated",
        "tool.started",
        "tool.completed",
        "round.completed",
        "round.started",
        "message.completed",
        "budget.updated",
        "round.completed",
        "run.completed",
    ]
    call = next(e for e in events if e.type == "tool.completed")
    assert call.data["name"] == "get_weather"
    assert call.data["result"].startswith("sunny, 21 C in ")
    assert done.status is culm.RunStatus.COMPLETED
    assert done.state.output["stop_reason"] == "max_rounds"
    usage = done.state.usage
    assert usage is not None and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


async def test_the_model_chooses_and_the_stream_stays_well_formed(
    make_engine: EngineFactory,
) -> None:
    """With tool_choice auto the model may call the tool or answer; either way is valid."""
    async with make_engine(local_app(max_rounds=2)) as engine:
        run = await engine.start_run("assistant", "What is the weather in Rome?")
        events = await all_events(engine, run.id, timeout=90)
    check_rounds(events)
    assert events[-1].type == "run.completed"
    assert events[-1].data["output"]["stop_reason"] in ("answered", "max_rounds")


async def test_the_conversation_continues_on_the_session(make_engine: EngineFactory) -> None:
    async with make_engine(local_app(tool_choice="none")) as engine:
        first = await engine.start_run("assistant", "My name is Ada.")
        assert (await all_events(engine, first.id, timeout=90))[-1].type == "run.completed"
        second = await engine.start_run(
            "assistant", "What is my name?", session_id=first.session_id
        )
        events = await all_events(engine, second.id, timeout=90)
        history = await engine.messages(first.session_id)
    check_rounds(events)
    assert [(m.role, m.run_id) for m in history] == [
        ("user", first.id),
        ("assistant", first.id),
        ("user", second.id),
        ("assistant", second.id),
    ]
    assert history[2].data["content"] == "What is my name?"


async def test_cancel_lands_between_tokens(make_engine: EngineFactory) -> None:
    app = local_app(tool_choice="none", model_settings={"max_tokens": 1000})
    app.add_agent("brief", model="local:smollm2", model_settings={"max_tokens": 8})
    async with make_engine(app) as engine:
        run = await engine.start_run("assistant", "Write a very long story about a dragon.")
        await events_until(engine, run.id, "message.delta", timeout=90)
        await engine.cancel(run.id)
        events = await all_events(engine, run.id)
        assert events[-1].type == "run.cancelled"
        assert events[-1].data["forced"] is False
        # the model is free at once: its generation stopped instead of running on
        again = await engine.start_run("brief", "Hi")
        assert (await all_events(engine, again.id, timeout=10))[-1].type == "run.completed"


DEMO_DEADLINE = 60.0
"""Bound on the built-in assistant's whole run: a few seconds on a quiet 2-core machine,
with room for a loaded one."""


@pytest.mark.parametrize("question", ["Name one colour.", "What is the capital of France?"])
async def test_the_built_in_assistant_answers_in_bounded_time(
    make_engine: EngineFactory, question: str
) -> None:
    """The demo streams a short answer: the grammar of its events and that text arrived,
    never what the text says."""
    from culm.examples import app as examples

    async with make_engine(examples) as engine:
        run = await engine.start_run("assistant", question)
        events = await all_events(engine, run.id, timeout=DEMO_DEADLINE)
        done = await engine.get_run(run.id)
    check_rounds(events)
    assert types(events) == [
        "run.queued",
        "run.started",
        "round.started",
        "message.completed",
        "budget.updated",
        "round.completed",
        "run.completed",
    ]
    deltas = [e.data["text"] for e in events if e.type == "message.delta"]
    assert deltas and "".join(deltas).strip()  # streamed, piece by piece
    assert done.state.output["stop_reason"] == "answered"
    assert done.state.output["text"] == "".join(deltas)
