"""Request bodies: read whole, within a size and a time limit, before any route sees them.

Every route here wants its body whole (it is one JSON document), so reading it up front
costs nothing and settles, in one place, what happens when a body is too large (413), too
slow (408) or abandoned (the client hung up: nothing to answer, nothing logged). The route
then gets the body in one message and can never fail half-way through reading it.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from culm.api.errors import error_response


def _declared(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None if absent or not a number), and whether the
    request has a body at all (a length above zero, or Transfer-Encoding)."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked or bool(length)


class BodyLimit:
    """ASGI middleware: the body of every request that has one is read here, up to
    ``limit`` bytes and within ``timeout`` seconds, and handed to the app in one message.

    A declared ``Content-Length`` over the limit is answered 413 at once; a chunked body
    that grows past it is answered 413 as soon as it does. Either way the app never runs,
    and the connection stays usable: the server discards the rest of the body (for at most
    ``body_timeout_seconds``, see ``connections.GuardedProtocol``). A body still incomplete
    after ``timeout`` seconds is answered 408 and the connection closed.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, has_body = _declared(scope)
        if not has_body:
            await self.app(scope, receive, send)
            return
        if length is not None and length > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: there is nobody to answer
                    body = message.get("body", b"")
                    received += len(body)
                    if received > self.limit:
                        await self._too_large(scope, receive, send)
                        return
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            response = error_response(
                408,
                "request_timeout",
                f"the request body did not arrive within {self.timeout:g} seconds",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"the request body is larger than the limit of {self.limit} bytes",
        )
        await response(scope, receive, send)
