"""An OpenAI-compatible chat server for the tests: real HTTP on a loopback port.

It answers ``POST /v1/chat/completions`` with ``stream=true`` the way OpenAI does (SSE
chunks, tool-call fragments, a final usage chunk, ``[DONE]``), following a script the test
sets: each request takes the next plan. A plan can also answer with an HTTP error, or stall
mid-stream until the client closes the connection, which the server then reports.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

import culm.testing

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Answer:
    """Stream ``text`` word by word and then ``calls`` (name, arguments) as fragments."""

    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    """(prompt, completion) tokens to report; estimated from the request when None."""


@dataclass
class Fail:
    """Answer with an HTTP error in OpenAI's error shape."""

    status: int
    message: str = "simulated failure"
    retry_after: float | None = None


@dataclass
class Drop:
    """Stream ``text``, then break the connection without ending the response."""

    text: str = "half an"


@dataclass
class Stall:
    """Stream ``text``, then send nothing more until the client goes away."""

    text: str = "thinking"


Plan = Answer | Fail | Drop | Stall


class FakeOpenAI:
    """The server, run by uvicorn in a thread of its own for the whole test session."""

    _shared: FakeOpenAI | None = None

    def __init__(self) -> None:
        self.plans: deque[Plan] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnected = threading.Event()
        """Set when a client closed a connection while its stream stalled."""
        self.streaming = 0
        """Responses being sent right now."""
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        config = uvicorn.Config(self, lifespan="off", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, args=([self._sock],), daemon=True)

    @classmethod
    def shared(cls) -> FakeOpenAI:
        """The one server of this test process, started on first use, stopped at exit."""
        if cls._shared is None:
            server = cls()
            server._thread.start()
            deadline = time.monotonic() + 10
            while not server._server.started:
                assert time.monotonic() < deadline, "the fake OpenAI server did not start"
                time.sleep(0.01)
            atexit.register(server._stop)
            cls._shared = server
        return cls._shared

    def _stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)

    def reset(self, *plans: Plan) -> FakeOpenAI:
        """Forget earlier requests and follow ``plans`` from now on."""
        with self._lock:
            self.plans = deque(plans)
            self.requests.clear()
            self.headers.clear()
            self.disconnected.clear()
        return self

    def script(self, *plans: Plan) -> None:
        """Add plans after those not used yet."""
        with self._lock:
            self.plans.extend(plans)

    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
            await _json(send, 404, {"error": {"message": f"no route {scope['path']}"}})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        with self._lock:
            self.requests.append(request)
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            plan = self.plans.popleft() if self.plans else None
        if plan is None:
            await _json(send, 500, {"error": {"message": "the fake server has no plan left"}})
        elif isinstance(plan, Fail):
            headers = (
                {"retry-after": f"{plan.retry_after:g}"} if plan.retry_after is not None else {}
            )
            error = {"message": plan.message, "type": "fake_error", "code": plan.status}
            await _json(send, plan.status, {"error": error}, headers)
        else:
            self.streaming += 1
            try:
                await self._stream(plan, request, receive, send)
            finally:
                self.streaming -= 1

    async def _stream(
        self, plan: Answer | Drop | Stall, request: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        model = request.get("model", "fake")

        async def event(data: Any) -> None:
            payload = data if isinstance(data, str) else json.dumps(data)
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {payload}\n\n".encode(),
                    "more_body": True,
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [choice],
            }

        await event(chunk({"role": "assistant", "content": ""}))
        pieces = 0
        for word in _words(plan.text):
            await event(chunk({"content": word}))
            pieces += 1
        if isinstance(plan, Drop):
            raise ConnectionAbortedError("the fake server drops this connection on purpose")
        if isinstance(plan, Stall):
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
            return
        for index, (name, arguments) in enumerate(plan.calls):
            start = {
                "index": index,
                "id": f"call_{index}_{len(self.requests)}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            await event(chunk({"tool_calls": [start]}))
            text = json.dumps(arguments)
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                await event(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                )
                pieces += 1
        await event(chunk({}, "tool_calls" if plan.calls else "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            prompt, completion = plan.usage or (len(json.dumps(request["messages"])) // 4, pieces)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            await event(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)] if text else []


async def _json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    pairs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": raw})


async def wait_for_thread_event(event: threading.Event, timeout: float) -> bool:
    """Wait for a flag set by the server's thread without blocking the test's loop."""
    return await asyncio.to_thread(event.wait, timeout)


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    """The fake server with an empty script; real model requests are allowed meanwhile."""
    server = FakeOpenAI.shared().reset()
    with culm.testing.allow_model_requests():
        yield server
