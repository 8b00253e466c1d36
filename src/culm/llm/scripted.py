"""A model that answers from a script: deterministic agents in tests, no network.

    model = ScriptedModel(
        Reply(calls=[call("get_weather", city="Paris")]),
        Reply("It is sunny in Paris."),
    )

Each call takes the next entry: a ``Reply``, a plain string (a text answer), or a
function of the ``ModelRequest`` returning either. ``requests`` records what it was asked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from culm.llm.assemble import estimate_tokens
from culm.llm.base import ModelRequest, ModelResponse, StreamItem, TextDelta, ToolCall, Usage
from culm.llm.errors import ModelError

_ids = itertools.count(1)


def call(name: str, /, **arguments: Any) -> ToolCall:
    """A tool call for a scripted reply; its arguments are written as JSON."""
    return ToolCall(id=f"call_{next(_ids)}", name=name, arguments=json.dumps(arguments))


@dataclass(slots=True, frozen=True)
class Reply:
    """One scripted answer: text, tool calls, or an error to raise instead."""

    text: str = ""
    calls: Sequence[ToolCall] = ()
    usage: Usage | None = None
    """Reported usage; estimated from the text when None."""
    error: Exception | None = None
    """Raised instead of answering (``TransientModelError`` to exercise retries)."""


Entry = Reply | str | Callable[[ModelRequest], "Reply | str"]


class ScriptedModel:
    """Answers each call with the next entry of its script; fails when it runs out."""

    def __init__(self, *entries: Entry, chunk_delay: float = 0.0, name: str = "scripted") -> None:
        """``chunk_delay`` seconds pass between streamed pieces (room for a cancel)."""
        self.entries: list[Entry] = list(entries)
        self.chunk_delay = chunk_delay
        self.name = name
        self.requests: list[ModelRequest] = []
        """Every request the model received, in order."""

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ScriptedModel]:
        yield self

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamItem, None]:
        self.requests.append(request)
        if not self.entries:
            raise ModelError(f"{self.name} has no reply left for call {len(self.requests)}")
        entry = self.entries.pop(0)
        reply = entry if isinstance(entry, Reply | str) else entry(request)
        if isinstance(reply, str):
            reply = Reply(reply)
        if reply.error is not None:
            raise reply.error
        for piece in re.findall(r"\s*\S+", reply.text) or ([reply.text] if reply.text else []):
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield TextDelta(piece)
        calls = tuple(reply.calls)
        usage = reply.usage or Usage(
            estimate_tokens(request.messages),
            estimate_tokens(reply.text) + sum(estimate_tokens(c.arguments) for c in calls),
        )
        yield ModelResponse(reply.text, calls, usage, "tool_calls" if calls else "stop")
