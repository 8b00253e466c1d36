"""One real server for the client tests: ``culm serve tests.agents:app`` in a subprocess."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import culm
from tests.client.serving import Proxy, Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("client") / "culm.db").start()
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[culm.Client]:
    with culm.Client(server.url) as client:
        yield client


@pytest.fixture
async def aclient(server: Server) -> AsyncIterator[culm.AsyncClient]:
    async with culm.AsyncClient(server.url) as client:
        yield client


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    proxy = Proxy(server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, which it may stop and restart."""
    server = Server(tmp_path / "culm.db").start()
    yield server
    server.stop()
