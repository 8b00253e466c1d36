"""A real ``culm serve`` in a subprocess, and a TCP proxy that can cut its connections."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

DEADLINE = 30.0
"""The longest any test waits for a condition: generous, since a machine under load is
slow, and free otherwise, since every wait ends as soon as its condition holds."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], object], timeout: float = DEADLINE, what: str = "") -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process, free of the caller's culm settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CULM_")}
    env.update(extra)
    return env


class Server:
    """``culm serve APP`` on a free loopback port and a SQLite file; restartable."""

    def __init__(
        self,
        db_path: Path,
        app: str | None = "tests.agents:app",
        *,
        keys: Sequence[str] = (),
        port: int | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: culm settings for the server (``CULM_...``), on top of a clean
        environment."""
        self.db_url = f"sqlite:///{db_path}"
        self.log_path = db_path.with_suffix(".log")
        self.app = app
        self.keys = keys
        self.port = port or free_port()
        self.cwd = cwd
        self.env = dict(env or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        args = [sys.executable, "-m", "culm.cli", "serve", *([self.app] if self.app else [])]
        args += ["--port", str(self.port), "--database-url", self.db_url]
        for key in self.keys:
            args += ["--api-key", key]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(**{"CULM_CANCEL_GRACE": "1", **self.env}),
                cwd=self.cwd,
            )
        try:
            wait_until(self._healthy, timeout, f"the server at {self.url}")
        except AssertionError as exc:
            # a server that never came up is stopped here: nobody else holds it
            self.stop(signal.SIGKILL)
            raise AssertionError(f"{exc}\n{self.log()}") from None
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Proxy:
    """Forwards loopback TCP connections to ``port``; ``drop()`` cuts every open one,
    the way a flaky network or a restarting load balancer would."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()  # the server is down: the caller sees a refused connection
                continue
            with self._lock:
                late = self._closed  # closed while this one was being accepted
                if not late:
                    self.accepted += 1
                    self._open |= {client, upstream}
            if late:
                client.close()
                upstream.close()
                return
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cut every connection open now (both sides see a reset or an early end)."""
        with self._lock:
            victims, self._open = self._open, set()
        for sock in victims:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        self.drop()
