"""Rebuild a whole answer from OpenAI-shaped stream chunks.

Both the OpenAI provider and llama-cpp-python stream chunks of the same shape: text in
``choices[0].delta.content``, tool calls as fragments keyed by ``index`` whose
``arguments`` arrive piece by piece, usage (when sent) in a chunk of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from culm.llm.base import ModelResponse, ToolCall, Usage


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ResponseBuilder:
    """Feed it chunks with ``add``; ``build`` gives the ``ModelResponse`` they make up."""

    __slots__ = ("_calls", "_finish", "_text", "_usage", "pieces")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None
        self.pieces = 0
        """Chunks that carried text or call fragments: roughly the tokens generated."""

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Take one chunk; returns the text it adds to the answer ('' if none)."""
        usage = chunk.get("usage")
        if usage:
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        text = ""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            if text:
                self._text.append(text)
                self.pieces += 1
            for fragment in delta.get("tool_calls") or ():
                self._add_call(fragment)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return text

    def _add_call(self, fragment: Mapping[str, Any]) -> None:
        call = self._calls.setdefault(int(fragment.get("index") or 0), _PartialCall())
        call.id = call.id or fragment.get("id") or ""
        function = fragment.get("function") or {}
        name = function.get("name")
        if name and not call.name.endswith(name):  # some servers repeat the name each time
            call.name += name
        if function.get("arguments"):
            call.arguments.append(function["arguments"])
            self.pieces += 1

    @property
    def usage(self) -> Usage | None:
        """The usage the provider reported, if it did."""
        return self._usage

    def build(self, usage: Usage | None = None) -> ModelResponse:
        """The answer; ``usage`` stands in when the provider reported none."""
        calls = tuple(
            ToolCall(id=c.id or f"call_{i}", name=c.name, arguments="".join(c.arguments) or "{}")
            for i, c in sorted(self._calls.items())
        )
        return ModelResponse(
            text="".join(self._text),
            tool_calls=calls,
            usage=self._usage or usage or Usage(),
            finish_reason=self._finish,
        )


def estimate_tokens(payload: Any) -> int:
    """A rough token count for text or JSON-like data: about four characters a token.

    Used to keep a budget before a call, and where a server reports no usage.
    """
    if isinstance(payload, str):
        return (len(payload) + 3) // 4
    if isinstance(payload, Mapping):
        return sum(estimate_tokens(v) for v in payload.values()) + 3
    if isinstance(payload, list | tuple):
        return sum(estimate_tokens(v) for v in payload)
    if payload is None:
        return 0
    return estimate_tokens(str(payload))
