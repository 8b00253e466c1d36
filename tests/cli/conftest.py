"""The CLI against a real server: in process through typer's runner where a pipe is
enough, as a real subprocess where signals and terminals matter."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import pytest
from typer.testing import CliRunner, Result

import culm
from culm.cli import app
from tests.client.serving import DEADLINE, Server, child_env, wait_until

Invoke = Callable[..., Result]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("cli") / "culm.db").start()
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[culm.Client]:
    with culm.Client(server.url) as client:
        yield client


@pytest.fixture
def culm_cli(server: Server) -> Invoke:
    """Run ``culm ARGS...`` in process with ``CULM_URL`` pointing at the server."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(app, list(args), env={"CULM_URL": server.url})

    return invoke


@dataclass
class Process:
    """A ``culm`` subprocess whose output is collected as it arrives, partial lines too
    (a prompt has no line break)."""

    proc: subprocess.Popen[bytes]
    chunks: dict[str, list[bytes]] = field(default_factory=lambda: {"out": [], "err": []})
    readers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            args = (stream, self.chunks[name])
            reader = threading.Thread(target=_collect, args=args, daemon=True)
            reader.start()
            self.readers.append(reader)

    @property
    def out(self) -> str:
        return b"".join(self.chunks["out"]).decode()

    @property
    def err(self) -> str:
        return b"".join(self.chunks["err"]).decode()

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        """The first stderr line containing ``text``, once it has been printed."""
        wait_until(lambda: text in self.err, timeout, f"{text!r} on stderr; got {self.err!r}")
        return next(line for line in self.err.splitlines() if text in line)

    def answer(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = DEADLINE) -> int:
        """Wait for the process to exit and its output to be read; its exit code."""
        code = self.proc.wait(timeout)
        for reader in self.readers:
            reader.join(timeout)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


def _collect(stream: IO[bytes] | None, chunks: list[bytes]) -> None:
    assert stream is not None
    while chunk := os.read(stream.fileno(), 65536):
        chunks.append(chunk)


@pytest.fixture
def spawn(server: Server) -> Iterator[Callable[..., Process]]:
    """Start ``culm ARGS...`` as a real process (``python -m culm.cli``), talking to the
    shared server unless given another ``url``."""
    started: list[Process] = []

    def start(*args: str, url: str | None = None) -> Process:
        proc = subprocess.Popen(
            [sys.executable, "-m", "culm.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(CULM_URL=url or server.url),
        )
        started.append(Process(proc))
        return started[-1]

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
        process.finish()
