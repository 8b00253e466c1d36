"""What the agent loop and every model provider agree on: requests, streamed items, usage.

Messages travel in the OpenAI chat shape (``role``, ``content``, ``tool_calls``,
``tool_call_id``), the lingua franca of the servers culm talks to; a provider whose wire
format differs converts at its edge.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

ChatMessage = dict[str, Any]
"""One message in the OpenAI chat shape."""


@dataclass(slots=True, frozen=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it is for, and a JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A call the model asked for; ``arguments`` is the JSON text it wrote, unparsed."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True, frozen=True)
class Usage:
    """Tokens one call (or, added up, one run) consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True, frozen=True)
class ModelRequest:
    """One call: the conversation so far, the tools on offer, and how to use them.

    ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or the name of one tool.
    ``max_tokens`` caps the completion (a token budget sets it), None leaves it open.
    """

    messages: list[ChatMessage]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str = "auto"
    max_tokens: int | None = None


@dataclass(slots=True, frozen=True)
class TextDelta:
    """A piece of the answer's text, as it streams."""

    text: str


@dataclass(slots=True, frozen=True)
class ModelResponse:
    """The whole answer of one call, the last item of every stream."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str | None = None

    def to_message(self) -> ChatMessage:
        """The assistant message to append to the conversation."""
        if not self.tool_calls:
            return {"role": "assistant", "content": self.text}
        return {
            "role": "assistant",
            "content": self.text or None,  # servers want null, not "", beside tool calls
            "tool_calls": [call.to_openai() for call in self.tool_calls],
        }


StreamItem = TextDelta | ModelResponse


class Connection(Protocol):
    """A provider ready to answer (an authenticated client, a loaded model)."""

    def stream(self, request: ModelRequest) -> AsyncGenerator[StreamItem, None]:
        """Text deltas as they come, then exactly one ``ModelResponse``.

        Close the generator (``contextlib.aclosing``) to abandon the call: the provider
        then stops generating or closes its HTTP response.
        """
        ...


class Model(Protocol):
    """A model an agent can use, named ``provider:model``."""

    name: str

    def connect(self) -> AbstractAsyncContextManager[Connection]:
        """Open what calls need (held for one run) and close it afterwards."""
        ...
