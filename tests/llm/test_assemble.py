"""Rebuilding a whole answer from OpenAI-shaped stream chunks."""

from __future__ import annotations

from typing import Any

from culm.llm import ModelResponse, ToolCall, Usage
from culm.llm.assemble import ResponseBuilder, estimate_tokens


def delta(finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}


def fragment(index: int, **fields: Any) -> dict[str, Any]:
    return delta(tool_calls=[{"index": index, **fields}])


class TestResponseBuilder:
    """Text pieces join, call fragments join by index, usage comes from its own chunk."""

    def test_text_and_calls(self) -> None:
        builder = ResponseBuilder()
        chunks = [
            delta(role="assistant", content=""),
            delta(content="Hel"),
            delta(content="lo"),
            fragment(0, id="a", function={"name": "f", "arguments": ""}),
            fragment(1, id="b", function={"name": "g", "arguments": '{"x"'}),
            fragment(0, function={"arguments": '{"y": 1}'}),
            fragment(1, function={"arguments": ": 2}"}),
            delta("tool_calls"),
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5}},
        ]
        assert [builder.add(c) for c in chunks] == ["", "Hel", "lo", "", "", "", "", "", ""]
        assert builder.build() == ModelResponse(
            "Hello",
            (ToolCall("a", "f", '{"y": 1}'), ToolCall("b", "g", '{"x": 2}')),
            Usage(9, 5),
            "tool_calls",
        )

    def test_missing_ids_arguments_and_usage_get_defaults(self) -> None:
        builder = ResponseBuilder()
        builder.add(fragment(0, function={"name": "f"}))
        builder.add({"choices": [{"index": 1, "delta": {"content": "other choice"}}]})
        assert builder.build(usage=Usage(3, 1)) == ModelResponse(
            "", (ToolCall("call_0", "f", "{}"),), Usage(3, 1), None
        )

    def test_a_name_repeated_in_every_fragment_is_kept_once(self) -> None:
        builder = ResponseBuilder()
        builder.add(fragment(0, id="a", function={"name": "get", "arguments": "{"}))
        builder.add(fragment(0, function={"name": "get", "arguments": "}"}))
        assert builder.build().tool_calls == (ToolCall("a", "get", "{}"),)


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens(None) == 0
    assert estimate_tokens([{"content": "abcd"}]) == 1 + 3
