"""Every bus passes the bus contract: the local bus, PostgreSQL LISTEN/NOTIFY and Redis,
on the real servers (``.ci/run`` starts them)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from culm.bus import Bus, LocalBus, open_bus
from culm.bus.postgres import PostgresBus
from culm.bus.redis import RedisBus
from tests.bus.contract import BusContract, MakeBus, NoticeContract
from tests.pg import PG_URL

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def channel() -> str:
    return f"culm_t_{uuid.uuid4().hex[:12]}"


async def _opened(urls: list[str]) -> AsyncIterator[MakeBus]:
    made: list[Bus] = []

    async def make() -> Bus:
        bus = open_bus(urls[0])
        await bus.open()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


class TestLocalBus(BusContract):
    @pytest.fixture
    async def make_bus(self) -> AsyncIterator[MakeBus]:
        async for make in _opened(["local"]):
            assert isinstance(await make(), LocalBus)
            yield make


class TestPostgresBus(BusContract, NoticeContract):
    @pytest.fixture
    async def make_bus(self, channel: str) -> AsyncIterator[MakeBus]:
        async for make in _opened([f"{PG_URL}?channel={channel}"]):
            yield make

    @pytest.fixture
    def cut_off(self):  # type: ignore[no-untyped-def]
        async def cut(bus: Bus) -> None:
            import asyncpg

            assert isinstance(bus, PostgresBus)
            admin = await asyncpg.connect(PG_URL)
            try:
                pid = bus._conn.get_server_pid()
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()

        return cut


class TestRedisBus(BusContract, NoticeContract):
    @pytest.fixture
    async def make_bus(self, channel: str) -> AsyncIterator[MakeBus]:
        async for make in _opened([f"{REDIS_URL}?channel={channel}"]):
            yield make

    @pytest.fixture
    def cut_off(self):  # type: ignore[no-untyped-def]
        async def cut(bus: Bus) -> None:
            import redis.asyncio as aioredis

            assert isinstance(bus, RedisBus)
            admin = aioredis.from_url(REDIS_URL)
            try:
                # only this bus's subscription: others may share this Redis
                for client in await admin.client_list(_type="pubsub"):
                    if client["name"] == f"culm-bus-{bus.sender}":
                        await admin.client_kill_filter(_id=client["id"])
            finally:
                await admin.aclose()

        return cut


def test_unknown_bus_urls_are_refused() -> None:
    from culm.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unsupported bus URL"):
        open_bus("amqp://x")


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://127.0.0.1:1/test"])
async def test_a_server_out_of_reach_is_reported_not_fatal(url: str) -> None:
    """A process starts while its bus server is down: it says so and keeps trying."""
    bus = open_bus(url)
    await bus.open()
    try:
        problem = bus.health()
        assert problem is not None and "connect" in problem
    finally:
        await bus.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://127.0.0.1:1/test"])
async def test_it_keeps_trying_to_reconnect(url: str) -> None:
    """A server that stays away: each failed try is reported (``health``), and the bus
    goes on trying."""
    bus = open_bus(url)
    await bus.open()
    try:
        for _ in range(300):
            if (bus.health() or "").startswith("cannot reconnect"):
                break
            await asyncio.sleep(0.01)
        assert (bus.health() or "").startswith("cannot reconnect"), bus.health()
    finally:
        await bus.close()
