"""Model providers: ``openai:MODEL``, ``local:PATH|smollm2``, and a scripted model for tests.

Nothing here knows about runs or events; the agent loop drives a ``Model`` through
``connect()`` and ``stream(request)``.
"""

from __future__ import annotations

from culm.llm.base import (
    ChatMessage,
    Connection,
    Model,
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from culm.llm.errors import ModelError, ModelRequestsBlocked, TransientModelError
from culm.llm.resolve import resolve_model
from culm.llm.retry import RetryPolicy

__all__ = [
    "ChatMessage",
    "Connection",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelRequestsBlocked",
    "ModelResponse",
    "RetryPolicy",
    "StreamItem",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "TransientModelError",
    "Usage",
    "resolve_model",
]
