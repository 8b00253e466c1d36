"""Reading Server-Sent Events the way a browser's EventSource does, for the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass
class Message:
    """One dispatched SSE message, or a comment line (``comment`` set, the rest empty)."""

    id: str | None = None
    event: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Messages and comments in arrival order; ends when the server ends the stream."""
    current = Message()
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data or current.event is not None or current.id is not None:
                current.data = "\n".join(data)
                yield current
            current, data = Message(), []
        elif line.startswith(":"):
            yield Message(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "id":
                current.id = value
            elif name == "event":
                current.event = value


async def events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every event of a stream that ends by itself, as the decoded ``data`` of each."""
    received = []
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for message in messages(response):
            if message.comment is None:
                event = message.json()
                assert message.id == str(event.get("pos", event["seq"]))
                assert message.event == event["type"]
                received.append(event)
    return received
