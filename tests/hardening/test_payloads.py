"""What a run emits, returns or is given is checked and copied where it enters: a value the
log cannot store fails that call, never the log (and so never every other run)."""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import culm
from culm.errors import InvalidPayload
from culm.models import ScheduleSpec
from culm.payload import check
from tests.conftest import EngineFactory

app = culm.App()


@app.agent
async def emits(run: culm.RunContext, input: Any) -> str:
    """Emits what it was told to (handed over in memory, see ``VALUES``), reports whether
    the emit was refused, then returns."""
    value = VALUES[input]
    try:
        await run.emit("test.value", {"value": value})
    except InvalidPayload as exc:
        return f"refused: {exc.message}"
    return "accepted"


@app.agent
async def careless(run: culm.RunContext, input: Any) -> None:
    """Emits what it was told to without catching anything."""
    await run.emit("test.value", {"value": VALUES[input]})


@app.agent
async def returns(run: culm.RunContext, input: Any) -> Any:
    return VALUES[input]


@app.agent
async def aliasing(run: culm.RunContext, input: None = None) -> None:
    data: dict[str, Any] = {"items": [1, 2]}
    await run.emit("test.value", data)
    data["items"].append(3)  # after the emit: must not change what was stored
    data["late"] = True
    await run.emit("test.value", data)


@app.agent
async def bystander(run: culm.RunContext, input: int) -> int:
    for i in range(input):
        await run.emit("test.tick", {"i": i})
        await run.sleep(0.001)
    return input


class Odd:
    pass


VALUES: dict[str, Any] = {
    "big int": 2**70,
    "negative big int": -(2**64),
    "set": {1, 2},
    "object": Odd(),
    "nan": math.nan,
    "infinity": math.inf,
    "surrogate": "\ud800",
    "int keys": {1: "a"},
    "deep": None,
}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


VALUES["deep"] = nested(300)


@pytest.fixture
def payload_engine(make_engine: EngineFactory) -> EngineFactory:
    def factory(**overrides: Any) -> Any:
        return make_engine(app, **overrides)

    return factory


class TestEmit:
    """A value that cannot be stored fails the emit; everything else goes on."""

    @pytest.mark.parametrize("name", [n for n in VALUES])
    async def test_refused_at_the_emit_and_catchable(
        self, payload_engine: EngineFactory, name: str
    ) -> None:
        async with payload_engine() as engine:
            other = await engine.start_run("bystander", 50)
            run = await engine.wait((await engine.start_run("emits", name)).id, timeout=10)
            assert run.status is culm.RunStatus.COMPLETED
            assert run.state.output.startswith("refused: the data of a test.value event")
            assert [e.type for e in await engine.events(run.id)] == [
                "run.queued",
                "run.started",
                "run.completed",
            ]
            assert (await engine.wait(other.id, timeout=10)).status is culm.RunStatus.COMPLETED

    async def test_a_run_that_does_not_catch_fails_with_the_reason(
        self, payload_engine: EngineFactory
    ) -> None:
        async with payload_engine() as engine:
            other = await engine.start_run("bystander", 50)
            run = await engine.wait((await engine.start_run("careless", "big int")).id, 10)
            assert run.status is culm.RunStatus.FAILED
            assert run.state.error is not None
            assert "does not fit in 64 bits" in run.state.error
            failed = (await engine.events(run.id))[-1]
            assert failed.type == "run.failed" and "Traceback" in failed.data["traceback"]
            assert (await engine.wait(other.id, timeout=10)).status is culm.RunStatus.COMPLETED
            # and the log still takes everyone's events
            after = await engine.wait((await engine.start_run("bystander", 5)).id, timeout=10)
            assert after.status is culm.RunStatus.COMPLETED

    async def test_an_output_that_cannot_be_stored_fails_the_run(
        self, payload_engine: EngineFactory
    ) -> None:
        async with payload_engine() as engine:
            run = await engine.wait((await engine.start_run("returns", "deep")).id, 10)
            assert run.status is culm.RunStatus.FAILED
            assert run.state.error is not None and "nested more than" in run.state.error

    async def test_an_event_past_the_size_limit_is_refused(
        self, payload_engine: EngineFactory
    ) -> None:
        VALUES["large"] = "x" * 5_000
        async with payload_engine(max_event_bytes=4_096) as engine:
            run = await engine.wait((await engine.start_run("emits", "large")).id, 10)
            assert run.state.output.startswith("refused:")
            assert "more than the limit of 4096" in run.state.output

    async def test_emitted_data_is_copied(self, payload_engine: EngineFactory) -> None:
        async with payload_engine() as engine:
            run = await engine.wait((await engine.start_run("aliasing")).id, 10)
            values = [e.data for e in await engine.events(run.id) if e.type == "test.value"]
            assert values == [{"items": [1, 2]}, {"items": [1, 2, 3], "late": True}]


class TestInputs:
    """Run input, session metadata and schedule input are checked before anything is
    stored."""

    async def test_a_deep_input_is_refused_and_nothing_is_stored(
        self, payload_engine: EngineFactory
    ) -> None:
        async with payload_engine() as engine:
            with pytest.raises(InvalidPayload, match="nested more than 64"):
                await engine.start_run("returns", nested(100))
            with pytest.raises(InvalidPayload, match=r"64.bit"):
                await engine.start_run("returns", {"n": 2**64})
            assert await engine.list_runs() == []

    async def test_a_refusal_names_the_part_at_fault(self, payload_engine: EngineFactory) -> None:
        async with payload_engine() as engine:
            bad = {"args": {"items": [1, {"ok": "x", "big": 2**70}]}}
            with pytest.raises(InvalidPayload) as refused:
                await engine.start_run("returns", bad)
            assert refused.value.message.startswith(
                "the input for agent 'returns'.args.items[1].big: the integer "
            )
            assert await engine.list_runs() == []
        nan = [1, "two", {"x": [float("nan")]}]
        with pytest.raises(InvalidPayload) as refused:
            check(nan, what="the data")
        assert refused.value.message == "the data[2].x[0]: nan is not a JSON number"

    async def test_session_metadata(self, payload_engine: EngineFactory) -> None:
        async with payload_engine() as engine:
            with pytest.raises(InvalidPayload):
                await engine.create_session(metadata={"deep": nested(100)})
            assert await engine.list_sessions() == []

    async def test_schedule_input(self, payload_engine: EngineFactory) -> None:
        async with payload_engine() as engine:
            with pytest.raises(InvalidPayload):
                await engine.create_schedule(
                    ScheduleSpec(agent="returns", input=nested(100), every=60)
                )
            assert await engine.list_schedules() == []


# -- random JSON, with bystanders --------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(codec=None), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=20,
)
LIMIT = 4_096
"""``max_event_bytes`` in the random tests: small, so big strings land on both sides of it."""
_big_text = st.text(alphabet=st.sampled_from('abcdefgh "\\\u00e9'), min_size=3_000, max_size=3_600)
_sized = st.one_of(
    _big_text,
    st.lists(_big_text, max_size=2),
    st.dictionaries(st.text(max_size=8), _big_text, max_size=2),
)
_values = st.one_of(_json, st.builds(nested, st.integers(min_value=1, max_value=120)), _sized)


def storable(value: Any, depth: int = 1) -> bool:
    """An independent statement of what the log stores: plain JSON, 64-bit integers,
    finite numbers, UTF-8 text, at most 64 levels deep (``{"value": ...}`` adds one)."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if depth > 64:
        return False
    if isinstance(value, list):
        return all(storable(v, depth + 1) for v in value)
    return all(storable(k) and storable(v, depth + 1) for k, v in value.items())


def fits(data: Any) -> bool:
    """A storable value's data is within ``LIMIT`` bytes of JSON."""
    return len(orjson.dumps(data)) <= LIMIT


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(_values, min_size=1, max_size=8))
def test_random_json_at_emit_while_others_run(batch: list[Any]) -> None:
    """Every value is either stored and read back equal, or refused by its own emit; the
    runs around it complete."""

    async def scenario(directory: str) -> None:
        settings = culm.Settings(
            database_url=f"sqlite:///{directory}/culm.db", max_event_bytes=LIMIT
        )
        async with culm.Engine(app, settings) as engine:
            others = [await engine.start_run("bystander", 20) for _ in range(2)]
            started = []
            for i, value in enumerate(batch):
                VALUES[f"random {i}"] = value
                started.append((value, await engine.start_run("emits", f"random {i}")))
            for value, run in started:
                ended = await engine.wait(run.id, timeout=20)
                assert ended.status is culm.RunStatus.COMPLETED
                if storable({"value": value}) and fits({"value": value}):
                    assert ended.state.output == "accepted", ended.state.output
                    [event] = [e for e in await engine.events(run.id) if e.type == "test.value"]
                    assert _same(event.data["value"], value)
                else:
                    assert ended.state.output.startswith("refused")
            for run in others:
                assert (await engine.wait(run.id, timeout=20)).status is culm.RunStatus.COMPLETED

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(directory))


tools_app = culm.App()


@tools_app.tool
def lookup(key: str) -> Any:
    """Looks a key up (in ``VALUES``)."""
    return VALUES[key]


tools_app.add_agent("agent", model="openai:none", tools=[lookup])
tools_app.agent(bystander)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(_values, min_size=1, max_size=6))
def test_random_json_as_tool_results_while_others_run(batch: list[Any]) -> None:
    """Every tool result is either recorded and read back equal, or refused as that call's
    own failure, which the model reads; the run and the runs around it complete."""
    from culm.llm.base import ToolCall
    from culm.testing import Reply, ScriptedModel, override_model

    calls = [
        ToolCall(id=f"call_{i}", name="lookup", arguments=json.dumps({"key": f"result {i}"}))
        for i in range(len(batch))
    ]
    for i, value in enumerate(batch):
        VALUES[f"result {i}"] = value

    async def scenario(directory: str) -> None:
        settings = culm.Settings(
            database_url=f"sqlite:///{directory}/culm.db", max_event_bytes=LIMIT
        )
        model = ScriptedModel(Reply(calls=calls), "Done.")
        async with culm.Engine(tools_app, settings) as engine:
            others = [await engine.start_run("bystander", 20) for _ in range(2)]
            with override_model(tools_app, "agent", model):
                run = await engine.start_run("agent", "go")
                ended = await engine.wait(run.id, timeout=30)
            assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
            outcomes = {
                e.data["call_id"]: e
                for e in await engine.events(run.id)
                if e.type in ("tool.completed", "tool.failed")
            }
            for i, value in enumerate(batch):
                event = outcomes[f"call_{i}"]
                if not storable({"value": value}):
                    assert event.type == "tool.failed"
                    assert "cannot be recorded" in event.data["error"]
                elif event.type == "tool.completed":
                    # what was accepted reads back equal (the event holds a little more
                    # than the result: near the limit either outcome is right)
                    assert len(orjson.dumps(value)) <= LIMIT
                    assert _same(event.data["result"], value)
                else:
                    assert "cannot be recorded" in event.data["error"]
                    assert len(orjson.dumps(value)) > LIMIT - 300, event.data["error"]
            for other in others:
                assert (await engine.wait(other.id, timeout=20)).status is culm.RunStatus.COMPLETED

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(directory))


def _same(stored: Any, sent: Any) -> bool:
    """Equal as JSON (tuples would be lists; -0.0 and 0.0 compare equal as numbers)."""
    if isinstance(sent, float):
        return isinstance(stored, float) and stored == sent
    return bool(stored == sent)


class TestModelToolCalls:
    """What a model writes cannot stop the run: unrecordable arguments or results become a
    tool error the model reads."""

    async def test_arguments_nested_300_deep_and_a_result_past_64_bits(
        self, make_engine: EngineFactory
    ) -> None:
        from culm.llm.base import ToolCall
        from culm.testing import Reply, ScriptedModel, call, override_model

        tools_app = culm.App()

        @tools_app.tool
        def lookup(key: Any = None) -> int:
            """Looks a key up."""
            return 2**70

        tools_app.add_agent("agent", model="openai:none", tools=[lookup])
        deep = ToolCall(id="call_deep", name="lookup", arguments="[" * 300 + "]" * 300)
        model = ScriptedModel(Reply(calls=[deep, call("lookup", key="k")]), "Done.")
        async with make_engine(tools_app) as engine:
            with override_model(tools_app, "agent", model):
                run = await engine.wait((await engine.start_run("agent", "go")).id, 10)
            assert run.status is culm.RunStatus.COMPLETED
            failed = {
                e.data["call_id"]: e.data["error"]
                for e in await engine.events(run.id)
                if e.type == "tool.failed"
            }
            assert "cannot be recorded" in failed["call_deep"]
            [other] = [v for k, v in failed.items() if k != "call_deep"]
            assert "the result cannot be recorded" in other and "64 bits" in other
            # the model read both errors in its next round
            tool_messages = [m for m in model.requests[1].messages if m["role"] == "tool"]
            assert all(m["content"].startswith("Error:") for m in tool_messages)
