"""Engines of one culm installation on PostgreSQL, each with its own bus connection, as
separate processes would have them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.cluster.engines import Engines, engine_factory
from tests.pg import pg_schema

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_schema() as url:
        yield url


@pytest.fixture
def channel() -> str:
    return f"culm_t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["postgresql", "redis"])
def bus_url(request: pytest.FixtureRequest, pg_url: str, channel: str) -> str:
    """The bus every process of the installation shares."""
    if request.param == "redis":
        return f"{REDIS_URL}?channel={channel}"
    return f"{pg_url}&channel={channel}"


@pytest.fixture
def engines(pg_url: str, bus_url: str) -> Engines:
    """Engines of one installation, each standing for a process of its own."""
    return engine_factory(pg_url, bus_url)
