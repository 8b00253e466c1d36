"""A real server in a subprocess on a free loopback port, and HTTP clients for it."""

from __future__ import annotations

import os
import resource
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b", "key-a2": "tenant-a"}

BASE_ENV = {
    "CULM_CANCEL_GRACE": "1",
    "CULM_HEARTBEAT_SECONDS": "0.3",
    "CULM_MAX_REQUEST_BYTES": "65536",
    "CULM_IDLE_POLL_SECONDS": "1",
    "CULM_SQLITE_SYNCHRONOUS": "NORMAL",
}


@dataclass
class Server:
    """A running server process and what a test needs to reach it."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


EDGE_ENV = {
    "CULM_TEST_APP": "tests.api.edge_agents:app",
    "CULM_HEADER_TIMEOUT_SECONDS": "1",
    "CULM_BODY_TIMEOUT_SECONDS": "1",
    "CULM_SEND_TIMEOUT_SECONDS": "1",
    "CULM_KEEPALIVE_SECONDS": "1",
    "CULM_MAX_PAGE_BYTES": "16384",
}
"""Short deadlines and small pages, so the tests of the HTTP edge reach them quickly."""


def start_server(
    directory: Path, *, open_files: tuple[int, int] | None = None, **env: str
) -> Server:
    """Start ``tests.api.serve`` on a fresh SQLite file; return once ``/healthz`` answers.
    ``open_files`` sets the process's (soft, hard) open-file limits before it starts."""

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "server.log"
    environ = {
        **os.environ,
        **BASE_ENV,
        "CULM_DATABASE_URL": f"sqlite:///{directory / 'culm.db'}",
        **env,
    }
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.api.serve"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=stderr,
            preexec_fn=limit_files if open_files is not None else None,
        )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(f"the server did not start:\n{log.read_text()}")
    server = Server(f"http://127.0.0.1:{int(line)}", process, log, env)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            server.stop()
            raise RuntimeError(f"the server never became healthy:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server without API keys: every caller is tenant ``default``."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with API keys for two tenants (``tenant-a`` has two keys)."""
    keys = ",".join(f"{key}={tenant}" for key, tenant in KEYS.items())
    running = start_server(tmp_path_factory.mktemp("keyed"), CULM_API_KEYS=keys)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of ``tests.api.edge_agents`` with short deadlines and 16 KiB pages."""
    running = start_server(tmp_path_factory.mktemp("edge"), **EDGE_ENV)
    yield running
    running.stop()


@pytest.fixture
async def edge(edge_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=edge_server.url, timeout=30) as http:
        yield http


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http
