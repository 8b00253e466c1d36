"""Supervised model processes: one child process per loaded local model.

A ``ModelProcess`` is started on first use, answers on a loopback port with the OpenAI
chat API (``culm.llm.child``), is started again by the next call after it died, and is
stopped when the server's interpreter exits (and stops by itself if the server is killed).
Its last lines of output are kept, so an error can say why it died.

Processes are shared by every run and event loop of this interpreter: state changes are
guarded by a thread lock and the child is a plain ``subprocess.Popen``, which belongs to
no event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from culm.llm.errors import ModelError, TransientModelError

START_TIMEOUT = 120.0
"""Seconds a model process gets to import llama-cpp-python and load its model."""
STOP_TIMEOUT = 5.0
"""Seconds a model process gets to exit after SIGTERM before it is killed."""
OUTPUT_LINES = 40
"""Lines of a model process's output kept to explain its death."""


@dataclass(slots=True, frozen=True)
class ProcessSpec:
    """What identifies a model process: the same spec shares one process."""

    path: Path
    alias: str
    n_ctx: int = 4096
    n_threads: int = 0
    chat_format: str | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_HINTS = {
    signal.SIGILL: "llama-cpp-python was built for CPU instructions this machine lacks: "
    "rebuild it portably (make llama)",
    signal.SIGKILL: "out of memory?",
}


def describe_exit(code: int) -> str:
    """``killed by SIGKILL`` or ``exited with 3``, from a ``Popen.returncode``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


def exit_hint(code: int) -> str:
    """What a death by this ``Popen.returncode`` suggests doing, or ``""``."""
    try:
        return _HINTS.get(signal.Signals(-code), "") if code < 0 else ""
    except ValueError:
        return ""


class ModelProcess:
    """One model in its own process; ``ensure()`` gives its base URL, (re)starting it."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self.port = 0
        """The loopback port of the running process: a free one is chosen at each start."""
        self.base_url = "http://127.0.0.1:0/v1"
        self.starts = 0
        """How many times the process was started (restarts are ``starts - 1``)."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES)

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def exit_status(self) -> str | None:
        """Why the last process ended (``killed by SIGILL (llama-cpp-python was built
        for...)``), None while it runs."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            return None
        hint = exit_hint(proc.returncode)
        return describe_exit(proc.returncode) + (f" ({hint})" if hint else "")

    async def exited(self, within: float = 1.0) -> str | None:
        """Why the process ended, waiting up to ``within`` seconds for it to end (a call
        that lost its connection usually sees the death just before it happens)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, within)
        return self.exit_status()

    def last_output(self, lines: int = 5) -> str:
        """The process's last lines of output, joined by `` | ``."""
        kept = [line for line in self._output if line.strip()]
        return " | ".join(kept[-lines:])

    async def ensure(self) -> str:
        """The base URL of a running, ready process; starts one if none runs.

        Raises ``ModelError`` when the process cannot start or dies while loading.
        """
        proc = self._start_if_needed()
        if self._ready:
            return self.base_url
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                if proc.poll() is not None:
                    died = self.exit_status()
                    raise ModelError(
                        f"local:{self.spec.alias}: the model process {died} while loading "
                        f"{self.spec.path}: {self.last_output() or 'no output'}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.base_url}/models")).status_code == 200:
                        self._ready = True
                        return self.base_url
                if time.monotonic() > deadline:
                    self.stop()
                    raise TransientModelError(
                        f"local:{self.spec.alias}: the model process did not answer within "
                        f"{START_TIMEOUT:.0f}s: {self.last_output() or 'no output'}"
                    )
                await asyncio.sleep(0.05)

    def _start_if_needed(self) -> subprocess.Popen[bytes]:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                return proc
            self._ready = False
            self._output.clear()
            # a port of its own each time: the last one may have been taken meanwhile
            self.port = _free_port()
            self.base_url = f"http://127.0.0.1:{self.port}/v1"
            spec = self.spec
            args = [
                sys.executable,
                "-m",
                "culm.llm.child",
                "--model",
                str(spec.path),
                "--alias",
                spec.alias,
                "--port",
                str(self.port),
                "--n-ctx",
                str(spec.n_ctx),
                "--n-threads",
                str(spec.n_threads),
                "--parent",
                str(os.getpid()),
            ]
            if spec.chat_format:
                args += ["--chat-format", spec.chat_format]
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is the server's to handle
            )
            self._proc = proc
            self.starts += 1
            _track()
            threading.Thread(
                target=self._collect, args=(proc,), name="culm-model-output", daemon=True
            ).start()
            return proc

    def _collect(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:  # lines are cut at 4 KiB: the kept output stays bounded in bytes
            for raw in iter(lambda: proc.stdout.readline(4096), b""):  # type: ignore[union-attr]
                self._output.append(raw.decode(errors="replace").rstrip())

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); the next ``ensure`` starts a new one."""
        with self._lock:
            proc, self._proc = self._proc, None
            self._ready = False
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_processes: dict[ProcessSpec, ModelProcess] = {}
_registry = threading.Lock()


def model_process(spec: ProcessSpec) -> ModelProcess:
    """The process for ``spec``, shared by every model that names it (not started yet)."""
    with _registry:
        found = _processes.get(spec)
        if found is None:
            found = _processes[spec] = ModelProcess(spec)
        return found


_tracked = False


def _track() -> None:
    global _tracked
    if not _tracked:
        _tracked = True
        atexit.register(stop_all)


def stop_all() -> None:
    """Stop every model process of this interpreter (at exit, and for tests)."""
    with _registry:
        processes = list(_processes.values())
    for process in processes:
        process.stop()


def running_processes() -> list[ModelProcess]:
    """Every model process this interpreter knows of, running or not (for metrics)."""
    with _registry:
        return list(_processes.values())
