"""``openai:MODEL``: any OpenAI-compatible server through the official ``openai`` SDK.

The API key and base URL come from the agent or from the SDK's own environment variables
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``), so OpenAI, vLLM, Ollama, llama.cpp's server and
LiteLLM all work. The SDK's own retries are switched off: the agent loop retries, so that
retries are bounded, logged and cancellable in one place.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai

from culm.llm.assemble import ResponseBuilder, estimate_tokens
from culm.llm.base import ModelRequest, StreamItem, TextDelta, Usage
from culm.llm.errors import ModelError, TransientModelError
from culm.llm.guard import check_allowed

_TRANSIENT_STATUS = frozenset({408, 409, 429})


class OpenAIModel:
    """A chat model behind an OpenAI-compatible ``/v1/chat/completions``."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        client: openai.AsyncOpenAI | None = None,
        **settings: Any,
    ) -> None:
        """``settings`` (temperature, top_p, ...) are passed on with every call."""
        self.model = model
        self.name = f"openai:{model}"
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = timeout
        self._client = client
        self._settings = settings

    def request_args(self, request: ModelRequest) -> dict[str, Any]:
        """The arguments of ``chat.completions.create`` for ``request`` (streamed)."""
        args: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._settings,
        }
        if request.tools:
            args["tools"] = [tool.to_openai() for tool in request.tools]
            args["tool_choice"] = _tool_choice(request.tool_choice)
        if request.max_tokens is not None:
            args["max_completion_tokens"] = request.max_tokens
        return args

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[_OpenAIConnection]:
        """A client for one run (closed after it), unless one was given to the model."""
        check_allowed(self.name)
        if self._client is not None:
            yield _OpenAIConnection(self, self._client)
            return
        try:
            client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                timeout=self._timeout,
                max_retries=0,
            )
        except openai.OpenAIError as exc:  # no API key anywhere
            raise ModelError(f"{self.name}: {exc}") from None
        async with client:
            yield _OpenAIConnection(self, client)


class _OpenAIConnection:
    def __init__(self, model: OpenAIModel, client: openai.AsyncOpenAI) -> None:
        self._model = model
        self._client = client

    def use_base_url(self, base_url: str) -> None:
        """Send the next calls to ``base_url`` (a local model's process, started again on
        another port)."""
        if str(self._client.base_url).rstrip("/") != base_url.rstrip("/"):
            self._client.base_url = base_url

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamItem, None]:
        model = self._model
        check_allowed(model.name)
        args = model.request_args(request)
        builder = ResponseBuilder()
        try:
            stream = await self._client.chat.completions.create(**args)
            async with stream:  # closes the HTTP response however the loop below ends
                async for chunk in stream:
                    text = builder.add(chunk.model_dump(exclude_none=True))
                    if text:
                        yield TextDelta(text)
        except openai.APIStatusError as exc:
            raise _status_error(model.name, exc) from None
        except openai.APIError as exc:  # connection lost, timeout, error event mid-stream
            raise TransientModelError(f"{model.name}: {exc.message}") from None
        except httpx.TransportError as exc:  # the SDK does not wrap errors mid-stream
            reason = str(exc) or type(exc).__name__
            raise TransientModelError(
                f"{model.name}: connection lost mid-answer: {reason}"
            ) from None
        estimate = Usage(estimate_tokens(request.messages), builder.pieces)
        yield builder.build(usage=estimate)


def _tool_choice(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _status_error(name: str, exc: openai.APIStatusError) -> ModelError:
    status = exc.status_code
    message = f"{name} answered {status}: {_provider_message(exc)}"
    if status in _TRANSIENT_STATUS or status >= 500:
        return TransientModelError(message, _retry_after(exc))
    return ModelError(message)


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare from model servers, backoff decides instead
        return None
