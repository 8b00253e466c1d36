"""A real HTTP receiver for webhooks on a free loopback port, in the test's event loop.

It answers each request as its script says (a status with headers, or hanging until the
sender gives up or the test lets go), then as its default; it records every request and
checks its signature with the ``standardwebhooks`` package, an implementation of the
Standard Webhooks check that shares nothing with culm's signer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

from tests.api.helpers import eventually


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    """Hold the request open until the receiver closes (or the sender gives up)."""


OK = Answer()
HANG = Answer(hang=True)


@dataclass
class Received:
    """One request as the receiver saw it."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    """The signature checked out under the path's secret."""
    answer: Answer

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """Requests to ``/{name}`` are answered by that name's script and checked against its
    secret (``expect``)."""

    def __init__(self) -> None:
        self.port = 0
        self.received: list[Received] = []
        self._scripts: dict[str, list[Answer]] = {}
        self._defaults: dict[str, Answer] = {}
        self._secrets: dict[str, str] = {}
        self._arrived = asyncio.Condition()
        self._closing = asyncio.Event()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def script(self, name: str, *answers: Answer, then: Answer = OK) -> None:
        self._scripts[name] = list(answers)
        self._defaults[name] = then

    def expect(self, name: str, secret: str) -> None:
        self._secrets[name] = secret

    def at(self, name: str) -> list[Received]:
        return [r for r in self.received if r.path == f"/{name}"]

    async def wait_for(self, name: str, count: int, timeout: float = 20) -> list[Received]:
        """The first ``count`` requests to ``name``, once they have arrived."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.at(name)) >= count)
        return self.at(name)[:count]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        name = scope["path"].lstrip("/")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        script = self._scripts.get(name, [])
        answer = script.pop(0) if script else self._defaults.get(name, OK)
        verified = False
        if name in self._secrets:
            try:
                Webhook(self._secrets[name]).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        async with self._arrived:
            self.received.append(
                Received(time.monotonic(), scope["path"], headers, body, verified, answer)
            )
            self._arrived.notify_all()
        if answer.hang:
            await self._closing.wait()
            return
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" if answer.status < 300 else b"no"})


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1 until the block ends."""
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    receiver.port = sock.getsockname()[1]
    config = uvicorn.Config(
        receiver, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(_started(server))
    try:
        yield receiver
    finally:
        receiver._closing.set()
        server.should_exit = True
        await task
        sock.close()


def _started(server: uvicorn.Server) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(server.started)

    return check
