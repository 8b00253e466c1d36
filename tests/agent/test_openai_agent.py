"""Model agents against an OpenAI-compatible server over real HTTP, through the engine."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import culm
from culm.events import Event
from culm.llm import RetryPolicy
from tests.agent.conftest import openai_agent
from tests.agent.events import all_events, check_rounds, events_until, types
from tests.conftest import EngineFactory
from tests.fake_openai import Answer, Drop, Fail, FakeOpenAI, Stall, wait_for_thread_event


def weather_app(server: FakeOpenAI, **options: object) -> culm.App:
    app = culm.App()

    @app.tool
    def get_weather(city: str, unit: str = "c") -> str:
        """Current weather for a city.

        Args:
            city: The city's name.
            unit: "c" or "f".
        """
        return f"sunny, 21 {unit} in {city}"

    openai_agent(app, server, tools=[get_weather], **options)  # type: ignore[arg-type]
    return app


def output(events: list[Event]) -> dict[str, object]:
    assert events[-1].type == "run.completed", events[-1]
    result: dict[str, object] = events[-1].data["output"]
    return result


class TestStreaming:
    """Text streams as message.delta events; the run's output carries the final text."""

    async def test_text_streams_then_completes(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(Answer("Hello there, friend.", usage=(12, 4)))
        async with make_engine(weather_app(openai_server)) as engine:
            run = await engine.start_run("helper", "Hi")
            events = await all_events(engine, run.id)
            done = await engine.get_run(run.id)
        assert types(events, deltas=True) == [
            "run.queued",
            "run.started",
            "round.started",
            "message.delta",
            "message.delta",
            "message.delta",
            "message.completed",
            "budget.updated",
            "round.completed",
            "run.completed",
        ]
        assert "".join(e.data["text"] for e in events if e.type == "message.delta") == (
            "Hello there, friend."
        )
        usage = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
        assert output(events) == {
            "text": "Hello there, friend.",
            "stop_reason": "answered",
            "rounds": 1,
            "usage": usage,
        }
        assert done.state.round == 1
        assert done.state.usage == usage
        sent = openai_server.requests[0]
        assert sent["stream"] is True and sent["model"] == "fake-model"
        assert sent["messages"] == [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hi"},
        ]
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        assert openai_server.headers[0]["authorization"] == "Bearer test-key"


class TestToolCalls:
    """Tool calls run between model calls; their results go back to the model."""

    async def test_one_tool_call(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(
            Answer(calls=[("get_weather", {"city": "Paris"})]), Answer("Sunny in Paris.")
        )
        async with make_engine(weather_app(openai_server)) as engine:
            run = await engine.start_run("helper", "Weather in Paris?")
            events = await all_events(engine, run.id)
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
        started = next(e for e in events if e.type == "tool.started")
        completed = next(e for e in events if e.type == "tool.completed")
        assert started.data == {
            "name": "get_weather",
            "call_id": "call_0_1",
            "arguments": {"city": "Paris"},
        }
        assert completed.data == {
            "name": "get_weather",
            "call_id": "call_0_1",
            "result": "sunny, 21 c in Paris",
        }
        assert output(events)["text"] == "Sunny in Paris."
        assert done.state.round == 2
        assert done.state.last_tool == "get_weather"
        assert done.state.last_tool_phase is culm.ToolPhase.FINISHED
        second = openai_server.requests[1]["messages"]
        assert second[-2]["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        }
        assert second[-1] == {
            "role": "tool",
            "tool_call_id": "call_0_1",
            "content": "sunny, 21 c in Paris",
        }

    async def test_several_calls_of_one_round_run_concurrently(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        app = culm.App()
        arrived = 0
        all_there = asyncio.Event()
        threads: set[int] = set()

        @app.tool
        async def meet(who: str) -> str:
            """Waits until every caller has arrived: only concurrent calls can finish."""
            nonlocal arrived
            arrived += 1
            if arrived == 3:
                all_there.set()
            await asyncio.wait_for(all_there.wait(), 10)
            return f"{who} met the others"

        @app.tool
        def where() -> str:
            """A sync tool: runs in a worker thread."""
            threads.add(threading.get_ident())
            return "here"

        openai_agent(app, openai_server, tools=[meet, where])
        calls = [("meet", {"who": w}) for w in ("ann", "bob", "cy")] + [("where", {})]
        openai_server.reset(Answer(calls=calls), Answer("Everyone met."))
        async with make_engine(app) as engine:
            run = await engine.start_run("helper", "Meet")
            events = await all_events(engine, run.id)
        check_rounds(events)
        results = [e.data["result"] for e in events if e.type == "tool.completed"]
        assert sorted(results) == [
            "ann met the others",
            "bob met the others",
            "cy met the others",
            "here",
        ]
        assert threading.get_ident() not in threads
        replies = openai_server.requests[1]["messages"][-4:]
        assert [m["tool_call_id"] for m in replies] == [
            "call_0_1",
            "call_1_1",
            "call_2_1",
            "call_3_1",
        ]

    async def test_tool_failures_become_results_the_model_sees(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        app = culm.App()

        @app.tool
        def divide(a: int, b: int) -> float:
            """Divides a by b."""
            return a / b

        @app.tool(timeout=0.05)
        async def slow() -> str:
            """Never finishes in time."""
            await asyncio.sleep(10)
            return "late"

        openai_agent(app, openai_server, tools=[divide, slow])
        calls = [
            ("divide", {"a": 1, "b": 0}),
            ("divide", {"a": "one"}),
            ("nowhere", {}),
            ("slow", {}),
            ("divide", {"a": 6, "b": 3}),
        ]
        openai_server.reset(Answer(calls=calls), Answer("Some calls failed."))
        async with make_engine(app) as engine:
            run = await engine.start_run("helper", "Divide")
            events = await all_events(engine, run.id)
        check_rounds(events)
        failed = {e.data["call_id"]: e.data["error"] for e in events if e.type == "tool.failed"}
        assert failed == {
            "call_0_1": "ZeroDivisionError: division by zero",
            "call_1_1": "invalid arguments for divide: a: Input should be a valid integer, "
            "unable to parse string as an integer; b: Field required",
            "call_2_1": "there is no tool named 'nowhere' (tools: divide, slow)",
            "call_3_1": "slow did not finish within 0.05s",
        }
        assert [e.data["result"] for e in events if e.type == "tool.completed"] == [2.0]
        assert output(events)["stop_reason"] == "answered"
        sent = {m["tool_call_id"]: m["content"] for m in openai_server.requests[1]["messages"][-5:]}
        assert sent["call_0_1"] == "Error: ZeroDivisionError: division by zero"
        assert sent["call_4_1"] == "2.0"


class TestModelErrors:
    """Transient failures are retried with backoff; others fail the run at once."""

    async def test_429_and_500_are_retried(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(Fail(429, "slow down", retry_after=0), Fail(500), Answer("Fine."))
        async with make_engine(weather_app(openai_server)) as engine:
            run = await engine.start_run("helper", "Hi")
            events = await all_events(engine, run.id)
        assert output(events)["text"] == "Fine."
        assert len(openai_server.requests) == 3
        check_rounds(events)

    async def test_a_stream_broken_midway_is_retried_from_the_start(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(Drop("Half an"), Answer("A whole answer."))
        async with make_engine(weather_app(openai_server)) as engine:
            run = await engine.start_run("helper", "Hi")
            events = await all_events(engine, run.id)
        deltas = [e.data for e in events if e.type == "message.delta"]
        at = {"round": 1, "attempt": 0}  # every delta says which round and attempt it is of
        assert deltas == [
            {"text": "Half", **at},
            {"text": " an", **at},
            {"text": "", "reset": True, **at},  # what streamed before is void
            {"text": "A", **at},
            {"text": " whole", **at},
            {"text": " answer.", **at},
        ]
        assert output(events)["text"] == "A whole answer."

    async def test_a_cancel_wakes_the_wait_before_a_retry(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        """The pause before a retry (10 s here) is a safe point: a cancel ends it at once,
        cooperatively, and no retry is made."""
        openai_server.reset(Fail(429, "slow down", retry_after=60), Answer("never"))
        patient = RetryPolicy(attempts=2, max_delay=10)
        async with make_engine(weather_app(openai_server, retry=patient)) as engine:
            waiting = threading.Event()
            announced = _Flag(waiting, "retry 1 of 2")  # logged as the wait begins
            logging.getLogger("culm.agent").addHandler(announced)
            try:
                run = await engine.start_run("helper", "Hi")
                assert await wait_for_thread_event(waiting, 10)
            finally:
                logging.getLogger("culm.agent").removeHandler(announced)
            began = time.monotonic()
            await engine.cancel(run.id)
            ended = await engine.wait(run.id, timeout=10)
            events = await all_events(engine, run.id)
        assert ended.status is culm.RunStatus.CANCELLED
        assert time.monotonic() - began < 2
        assert events[-1].type == "run.cancelled" and events[-1].data["forced"] is False
        assert len(openai_server.requests) == 1

    async def test_retries_are_bounded(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(Fail(503), Fail(503), Fail(503), Answer("never"))
        async with make_engine(weather_app(openai_server)) as engine:
            run = await engine.start_run("helper", "Hi")
            events = await all_events(engine, run.id)
        assert events[-1].type == "run.failed"
        assert (
            "answered 503: simulated failure (gave up after 2 retries)" in events[-1].data["error"]
        )
        assert len(openai_server.requests) == 3

    async def test_401_fails_at_once_with_the_providers_message(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(Fail(401, "Incorrect API key provided: test-key."), Answer("never"))
        async with make_engine(weather_app(openai_server)) as engine:
            run = await engine.start_run("helper", "Hi")
            events = await all_events(engine, run.id)
        assert events[-1].type == "run.failed"
        assert events[-1].data["error"] == (
            "ModelError: openai:fake-model answered 401: Incorrect API key provided: test-key."
        )
        assert len(openai_server.requests) == 1

    async def test_blocked_outside_tests_that_opt_in(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        async with make_engine(weather_app(openai_server)) as engine:
            with culm.testing.allow_model_requests(False):
                run = await engine.start_run("helper", "Hi")
                events = await all_events(engine, run.id)
        assert events[-1].type == "run.failed"
        assert "ModelRequestsBlocked" in events[-1].data["error"]
        assert openai_server.requests == []


class TestLimits:
    """max_rounds, token_budget and timeout end runs at clean points."""

    async def test_max_rounds_ends_with_a_round_without_tools(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        again = Answer(calls=[("get_weather", {"city": "Oslo"})])
        openai_server.reset(again, again, Answer("Here is what I found."))
        async with make_engine(weather_app(openai_server, max_rounds=2)) as engine:
            run = await engine.start_run("helper", "Weather?")
            events = await all_events(engine, run.id)
        check_rounds(events)
        assert output(events)["stop_reason"] == "max_rounds"
        assert output(events)["rounds"] == 3
        assert output(events)["text"] == "Here is what I found."
        choices = [r.get("tool_choice") for r in openai_server.requests]
        assert choices == ["auto", "auto", "none"]

    async def test_a_call_that_would_pass_the_budget_is_not_made(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(
            Answer("Let me look.", calls=[("get_weather", {"city": "Rome"})], usage=(200, 20)),
            Answer("never"),
        )
        app = weather_app(openai_server, token_budget=300)
        async with make_engine(app) as engine:
            run = await engine.start_run("helper", "Weather?")
            events = await all_events(engine, run.id)
        check_rounds(events)
        assert output(events) == {
            "text": "Let me look.",
            "stop_reason": "budget_exhausted",
            "rounds": 1,
            "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220},
        }
        budget = next(e for e in events if e.type == "budget.updated")
        assert budget.data["budget_left"] == 80
        assert len(openai_server.requests) == 1
        cap = openai_server.requests[0]["max_completion_tokens"]
        assert 0 < cap < 300

    async def test_timeout_fails_the_run_and_closes_the_stream(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(Stall("Thinking"))
        async with make_engine(weather_app(openai_server, timeout=1.0)) as engine:
            run = await engine.start_run("helper", "Hi")
            events = await all_events(engine, run.id)
            assert await wait_for_thread_event(openai_server.disconnected, 10)
        assert events[-1].type == "run.failed"
        assert events[-1].data["error"] == "TimeoutError: the agent ran past its timeout of 1s"


class TestCancellation:
    """Cancelling lands mid-stream and mid-tool; the model's response is closed."""

    async def test_cancel_mid_stream_closes_the_response(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(Stall("Let me think about"))
        async with make_engine(weather_app(openai_server)) as engine:
            run = await engine.start_run("helper", "Hi")
            await events_until(engine, run.id, "message.delta")
            await engine.cancel(run.id, by="tester", reason="enough")
            events = await all_events(engine, run.id)
            assert await wait_for_thread_event(openai_server.disconnected, 10)
        assert events[-1].type == "run.cancelled"
        assert events[-1].data["forced"] is False  # at a safe point, not after the grace
        assert events[-1].data["by"] == "tester"
        assert types(events)[-2:] == ["round.started", "run.cancelled"]

    async def test_cancel_mid_tool(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        app = culm.App()
        outcome: list[str] = []

        @app.tool
        async def wait_forever() -> str:
            """Waits until cancelled."""
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            return "woke"

        openai_agent(app, openai_server, tools=[wait_forever])
        openai_server.reset(Answer(calls=[("wait_forever", {})]), Answer("never"))
        async with make_engine(app) as engine:
            run = await engine.start_run("helper", "Wait")
            await events_until(engine, run.id, "tool.started")
            await engine.cancel(run.id)
            events = await all_events(engine, run.id)
            messages = await engine.messages(run.session_id)
        assert events[-1].type == "run.cancelled" and events[-1].data["forced"] is False
        assert types(events)[-2:] == ["tool.started", "run.cancelled"]
        assert outcome == ["cancelled"]
        assert openai_server.streaming == 0  # no response to the model is left open
        assert len(openai_server.requests) == 1
        # the interrupted round left nothing half-done in the history
        assert [m.role for m in messages] == ["user"]


class TestConversation:
    """The session keeps the conversation: the next run continues it."""

    async def test_a_second_run_on_the_session_sees_the_first(
        self, make_engine: EngineFactory, openai_server: FakeOpenAI
    ) -> None:
        openai_server.reset(
            Answer(calls=[("get_weather", {"city": "Lima"})]),
            Answer("Sunny in Lima."),
            Answer("You asked about Lima."),
        )
        async with make_engine(weather_app(openai_server)) as engine:
            first = await engine.start_run("helper", "Weather in Lima?")
            await all_events(engine, first.id)
            second = await engine.start_run(
                "helper", "Which city did I ask about?", session_id=first.session_id
            )
            events = await all_events(engine, second.id)
            history = await engine.messages(first.session_id)
        assert output(events)["text"] == "You asked about Lima."
        call = {
            "id": "call_0_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
        }
        conversation = [
            {"role": "user", "content": "Weather in Lima?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0_1", "content": "sunny, 21 c in Lima"},
            {"role": "assistant", "content": "Sunny in Lima."},
            {"role": "user", "content": "Which city did I ask about?"},
        ]
        assert openai_server.requests[2]["messages"][1:] == conversation
        stored = [
            {
                k: v
                for k, v in m.to_dict().items()
                if k in ("role", "content", "tool_calls", "tool_call_id")
            }
            for m in history
        ]
        assert stored == [*conversation, {"role": "assistant", "content": "You asked about Lima."}]
        assert [m.run_id for m in history] == [first.id] * 4 + [second.id] * 2


class _Flag(logging.Handler):
    """Sets ``event`` when a record saying ``text`` is logged."""

    def __init__(self, event: threading.Event, text: str) -> None:
        super().__init__()
        self.event = event
        self.text = text

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()
