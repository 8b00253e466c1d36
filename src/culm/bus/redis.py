"""Notices between processes over Redis pub/sub (redis-py's asyncio client).

Pub/sub keeps nothing for a subscriber that is away, which is all a notice needs: the log
in the database is what followers read. The channel is ``culm`` unless the URL says
``?channel=name``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from culm.bus.remote import RemoteBus


class RedisBus(RemoteBus):
    def __init__(self, url: str, interval: float = 0.002) -> None:
        super().__init__(interval)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.channel = query.pop("channel", "culm")
        self._url = urlunsplit(parts._replace(query=urlencode(query)))
        self._client: Any = None
        self._pubsub: Any = None

    async def _connect(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self._url, client_name=f"culm-bus-{self.sender}")
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(self.channel)
        except Exception:
            await client.aclose()
            raise
        self._client, self._pubsub = client, pubsub

    async def _disconnect(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if pubsub is not None:
            await pubsub.aclose()
        if client is not None:
            await client.aclose()

    async def _send(self, payload: str) -> None:
        if self._client is None:
            raise ConnectionError("not connected")
        await self._client.publish(self.channel, payload)

    async def _listen(self, deliver: Callable[[str | bytes], None]) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            raise ConnectionError("not connected")
        async for message in pubsub.listen():
            if message.get("type") == "message":
                deliver(message["data"])
        raise ConnectionError("the Redis subscription ended")
