"""Real processes on one database (a SQLite file, or PostgreSQL with
``CULM_TEST_DATABASE=postgresql``): a restart after downtime, and two schedulers racing
over the same fire times."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import culm
from culm.models import FiringOutcome
from tests.schedule.conftest import T0, Clock, ClockedEngine

ROOT = Path(__file__).parents[2]


async def in_process(command: str, **args: Any) -> dict[str, Any]:
    """Run ``tests.schedule.proc`` in a new Python process and return what it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.schedule.proc",
        command,
        json.dumps(args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


class TestRestart:
    """A process fires, exits; time passes with nothing running; the next process applies
    the misfire policy once, and the cadence carries on from now."""

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            ("run_once", [("started", 60, 1), ("missed", 120, 178), ("started", 10800, 1)]),
            ("skip", [("started", 60, 1), ("missed", 120, 179)]),
            (
                "catch_up",
                [
                    ("started", 60, 1),
                    ("missed", 120, 176),
                    ("started", 10680, 1),
                    ("started", 10740, 1),
                    ("started", 10800, 1),
                ],
            ),
        ],
    )
    async def test_restart_after_downtime(
        self,
        db_url: str,
        clock: Clock,
        make_clocked: ClockedEngine,
        policy: str,
        expected: list[tuple[str, float, int]],
    ) -> None:
        spec = {
            "agent": "echo",
            "input": "x",
            "every": 60,
            "misfire": policy,
            "misfire_grace": 10,
            "max_catch_up": 3,
            "max_lateness": 600,
            "overlap": "allow",
        }
        created = await in_process("create", db=db_url, now=T0, spec=spec)
        clock.now = T0 + 3 * 3600 + 30  # three hours on, 30 s past a fire time: all late
        async with make_clocked() as engine:
            await engine.scheduler.tick()
            firings = await engine.schedule_firings(created["id"], limit=100)
            got = [(f.outcome.value, f.scheduled_at - T0, f.count) for f in reversed(firings)]
            assert got == expected
            schedule = await engine.get_schedule(created["id"])
            assert schedule.next_fire_at == T0 + 10860


class TestTwoProcesses:
    """Two schedulers on one database, ticking through the same hour together: every fire
    time starts exactly one run."""

    async def test_every_fire_time_starts_exactly_one_run(
        self, db_url: str, tmp_path: Path, clock: Clock, make_clocked: ClockedEngine
    ) -> None:
        n = 60
        async with make_clocked() as engine:
            schedule = await engine.create_schedule(
                culm.models.ScheduleSpec(agent="echo", input="x", every=60, overlap="allow")  # type: ignore[arg-type]
            )
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        common = {
            "db": db_url,
            "schedule": schedule.id,
            "start": T0,
            "stop": T0 + 60 * n,
            "step": 30,
            "barrier": str(barrier),
            "parties": 2,
        }
        a, b = await asyncio.gather(
            in_process("race", name="a", **common), in_process("race", name="b", **common)
        )
        assert a["worker"] != b["worker"]
        assert a["won"] + b["won"] == n, (a, b)
        async with make_clocked() as engine:
            firings = await engine.schedule_firings(schedule.id, limit=1000)
            runs = await engine.list_runs(culm.RunFilter(schedule_id=schedule.id), limit=1000)
        assert sorted(f.scheduled_at - T0 for f in firings) == [60.0 * k for k in range(1, n + 1)]
        assert {f.outcome for f in firings} == {FiringOutcome.STARTED}, [
            f.detail for f in firings if f.outcome is not FiringOutcome.STARTED
        ]
        assert sorted(r.id for r in runs) == sorted(f.run_id for f in firings if f.run_id)
        assert len(runs) == n
