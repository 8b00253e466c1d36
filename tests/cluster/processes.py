"""A cluster of real processes on one PostgreSQL schema: API processes (``CULM_ROLE=api``,
uvicorn, as ``tests.api.serve``) and ``culm worker`` processes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.api.conftest import BASE_ENV, Server, start_server
from tests.pg import PG_URL

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class Cluster:
    url: str
    env: dict[str, str]
    directory: Path
    apis: list[Server] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    def api(self, **env: str) -> Server:
        n = len(self.apis)
        server = start_server(self.directory / f"api{n}", **{**self.env, **env})
        self.apis.append(server)
        return server

    def worker(self, concurrency: int = 100, *args: str, **env: str) -> Worker:
        """A ``culm worker`` process (``args``: more of its options), once it is ready."""
        n = len(self.workers)
        log = self.directory / f"worker{n}.log"
        environ = {**os.environ, **BASE_ENV, **self.env, **env}
        more = ["--concurrency", str(concurrency), *args]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "culm.cli", "worker", "tests.agents:app", *more],
                cwd=ROOT,
                env=environ,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        deadline = time.monotonic() + 60
        while b"ready" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"the worker did not start:\n{log.read_text()}")
            time.sleep(0.05)
        worker = Worker(process, log)
        self.workers.append(worker)
        return worker


async def _schema(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def cluster(directory: Path, **env: str) -> AsyncIterator[Cluster]:
    """An empty schema and the processes a test starts on it; all stopped and dropped
    on exit."""
    name = f"culm_t_{uuid.uuid4().hex[:12]}"
    await _schema(f'CREATE SCHEMA "{name}"')
    url = f"{PG_URL}?search_path={name}"
    base = {
        "CULM_DATABASE_URL": url,
        "CULM_BUS_URL": f"{url}&channel={name}",
        "CULM_IDLE_POLL_SECONDS": "2",
        **env,
    }
    made = Cluster(url, base, directory)
    try:
        yield made
    finally:
        for worker in made.workers:
            with suppress(Exception):
                worker.stop()
        for api in made.apis:
            with suppress(Exception):
                api.stop()
        await _schema(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def wait_exit(worker: Worker, timeout: float) -> int:
    """The worker's exit code, once it exits by itself within ``timeout``."""
    deadline = time.monotonic() + timeout
    while worker.process.poll() is None:
        assert time.monotonic() < deadline, f"did not exit:\n{worker.log.read_text()}"
        select.select([], [], [], 0.05)
    return worker.process.returncode


KILL = signal.SIGKILL
TERM = signal.SIGTERM
