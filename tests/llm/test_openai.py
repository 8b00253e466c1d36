"""The OpenAI provider against an OpenAI-compatible server, over real HTTP."""

from __future__ import annotations

import json
import socket
from contextlib import aclosing

import pytest

import culm.testing
from culm.llm import (
    ModelError,
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolSpec,
    TransientModelError,
    Usage,
    resolve_model,
)
from culm.llm.openai import OpenAIModel
from tests.fake_openai import Answer, Fail, FakeOpenAI, Stall, wait_for_thread_event

REQUEST = ModelRequest(
    [{"role": "user", "content": "Hi"}],
    [ToolSpec("get_weather", "Weather.", {"type": "object", "properties": {}})],
)


def model(server: FakeOpenAI, **settings: object) -> OpenAIModel:
    made = resolve_model("openai:fake-model", api_key="k", base_url=server.base_url, **settings)
    assert isinstance(made, OpenAIModel)
    return made


async def collect(m: OpenAIModel, request: ModelRequest = REQUEST) -> list[StreamItem]:
    async with m.connect() as connection:
        return [item async for item in connection.stream(request)]


async def test_text_and_tool_calls_stream_then_the_whole_response(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.reset(
        Answer("Let me see.", calls=[("get_weather", {"city": "Oslo"}), ("get_weather", {})])
    )
    items = await collect(model(openai_server, temperature=0.5))
    assert items[:-1] == [TextDelta("Let"), TextDelta(" me"), TextDelta(" see.")]
    assert items[-1] == ModelResponse(
        "Let me see.",
        (
            ToolCall("call_0_1", "get_weather", '{"city": "Oslo"}'),
            ToolCall("call_1_1", "get_weather", "{}"),
        ),
        Usage(len(json.dumps(REQUEST.messages)) // 4, 7),
        "tool_calls",
    )
    sent = openai_server.requests[0]
    assert sent["temperature"] == 0.5
    assert sent["tool_choice"] == "auto"
    assert sent["stream_options"] == {"include_usage": True}
    assert "max_completion_tokens" not in sent


async def test_tool_choice_and_token_cap_are_sent(openai_server: FakeOpenAI) -> None:
    openai_server.reset(Answer("a"), Answer("b"))
    m = model(openai_server)
    await collect(m, ModelRequest(REQUEST.messages, REQUEST.tools, "get_weather", 50))
    await collect(m, ModelRequest(REQUEST.messages, [], "required"))
    first, second = openai_server.requests
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert first["max_completion_tokens"] == 50
    assert "tools" not in second and "tool_choice" not in second


@pytest.mark.parametrize(
    ("status", "transient"),
    [(429, True), (500, True), (503, True), (408, True), (400, False), (401, False), (404, False)],
)
async def test_status_errors(openai_server: FakeOpenAI, status: int, transient: bool) -> None:
    openai_server.reset(Fail(status, "the provider says no", retry_after=1.5))
    with pytest.raises(ModelError) as caught:
        await collect(model(openai_server))
    assert isinstance(caught.value, TransientModelError) is transient
    assert caught.value.message == f"openai:fake-model answered {status}: the provider says no"
    if transient:
        assert isinstance(caught.value, TransientModelError)
        assert caught.value.retry_after == 1.5


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    m = OpenAIModel("x", api_key="k", base_url=f"http://127.0.0.1:{port}/v1", timeout=5)
    with culm.testing.allow_model_requests(), pytest.raises(TransientModelError):
        await collect(m)


async def test_no_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with culm.testing.allow_model_requests(), pytest.raises(ModelError, match="api_key"):
        async with OpenAIModel("x").connect():
            pass


async def test_closing_the_stream_closes_the_response(openai_server: FakeOpenAI) -> None:
    openai_server.reset(Stall("Still thinking"))
    async with (
        model(openai_server).connect() as connection,
        aclosing(connection.stream(REQUEST)) as items,
    ):
        assert await anext(items) == TextDelta("Still")
    assert await wait_for_thread_event(openai_server.disconnected, 10)


async def test_a_given_client_is_used_and_left_open(openai_server: FakeOpenAI) -> None:
    import openai

    openai_server.reset(Answer("one"), Answer("two"))
    async with openai.AsyncOpenAI(api_key="own", base_url=openai_server.base_url) as client:
        m = OpenAIModel("fake-model", client=client)
        await collect(m)
        await collect(m)
    assert [h["authorization"] for h in openai_server.headers] == ["Bearer own"] * 2
