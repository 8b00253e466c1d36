"""``culm run --follow`` across a server that shuts down: it ends with the run's outcome
once the server is back, and says plainly when the server does not come back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from culm.cli import ExitCode
from tests.cli.conftest import Process
from tests.client.serving import Server, child_env


def follower(server: Server, **env: str) -> Process:
    proc = subprocess.Popen(
        [sys.executable, "-m", "culm", "run", "waiter", "--follow"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(CULM_URL=server.url, **env),
    )
    return Process(proc)


class TestFollowerAcrossRestart:
    """The run a shut-down server leaves behind ends ``interrupted``: exit 5, not 1."""

    def test_a_clean_shutdown_then_a_restart(self, tmp_path: Path) -> None:
        server = Server(tmp_path / "culm.db").start()
        watching = follower(server)
        try:
            watching.wait_for("following")
            server.stop()  # SIGTERM: the server ends its streams and interrupts its runs
            server.start()
            assert watching.finish() == ExitCode.RUN_INTERRUPTED, watching.err
            assert "interrupted" in watching.err
            assert "cannot reach" not in watching.err
        finally:
            if watching.proc.poll() is None:
                watching.proc.kill()
                watching.finish()
            server.stop()

    def test_a_server_that_does_not_come_back(self, tmp_path: Path) -> None:
        server = Server(tmp_path / "culm.db").start()
        watching = follower(server, CULM_RECONNECT_FOR="2")
        try:
            watching.wait_for("following")
            server.stop()
            assert watching.finish() == ExitCode.ERROR
            assert "lost the server while following run_" in watching.err
            assert "did not come back" in watching.err
            assert "culm status run_" in watching.err
            assert "Traceback" not in watching.err
        finally:
            if watching.proc.poll() is None:
                watching.proc.kill()
                watching.finish()
