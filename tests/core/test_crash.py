"""A process killed mid-run loses nothing it showed anyone, and its runs end interrupted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import culm
from tests.conftest import EngineFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """These tests read the SQLite file behind the killed process's back: SQLite only
    (tests/cluster kills workers on PostgreSQL)."""
    return sqlite_url


def run_until_killed(db_url: str, runs: int, events: int) -> tuple[set[tuple[str, int]], str]:
    """Start the worker, read what it delivered until ``events`` lines, then kill -9 it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.core.crash_worker", db_url, str(runs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    delivered: set[tuple[str, int]] = set()
    queued = ""
    deadline = time.monotonic() + 60
    try:
        while len(delivered) < events:
            assert time.monotonic() < deadline, "the worker delivered too little"
            line = proc.stdout.readline()
            assert line, "the worker exited early"
            parts = line.split()
            if parts[0] == "queued":
                queued = parts[1]
            else:
                delivered.add((parts[0], int(parts[1])))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return delivered, queued


async def test_kill_9_mid_run(db_url: str, make_engine: EngineFactory) -> None:
    delivered, queued = run_until_killed(db_url, runs=4, events=400)

    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    async with make_engine() as engine:  # a new process's engine: recovery runs on open
        run_ids = {run_id for run_id, _ in delivered}
        assert len(run_ids) == 4
        for run_id in [*run_ids, queued]:
            run = await engine.get_run(run_id)
            assert run.status is culm.RunStatus.INTERRUPTED, run_id
            assert run.state.error == "the process running it died"
            events = await engine.events(run_id, limit=100_000)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert [e.type for e in events].count("run.interrupted") == 1
            assert events[-1].type == "run.interrupted"
            stored = {(e.run_id, e.seq) for e in events}
            assert {d for d in delivered if d[0] == run_id} <= stored
            # a subscriber that reconnects now sees the whole stream end
            assert [e.seq async for e in engine.subscribe(run_id)] == [e.seq for e in events]
        # the store works normally after the crash
        run = await engine.start_run("echo", "after")
        assert (await engine.wait(run.id, timeout=10)).status is culm.RunStatus.COMPLETED
