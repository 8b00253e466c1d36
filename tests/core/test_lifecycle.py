from __future__ import annotations

import pytest

import culm
from tests.conftest import EngineFactory


async def test_a_run_completes_and_its_stream_ends(engine: culm.Engine) -> None:
    run = await engine.start_run("count", 3)
    types = [e.type async for e in engine.subscribe(run.id)]
    assert types == ["run.queued", "run.started", *["test.tick"] * 3, "run.completed"]
    done = await engine.get_run(run.id)
    assert done.status is culm.RunStatus.COMPLETED
    assert done.state.output == 3


class TestRetention:
    """Events are kept until the session is deleted or the retention age passes."""

    async def test_events_of_old_runs_are_purged_runs_stay(
        self, make_engine: EngineFactory
    ) -> None:
        now = [1_000_000.0]
        async with make_engine(retention_seconds=3600) as engine:
            engine.clock = lambda: now[0]
            old = await engine.start_run("count", 2)
            await engine.wait(old.id, timeout=10)
            assert await engine.purge() == 0  # not old enough yet
            now[0] += 3601
            recent = await engine.start_run("count", 1)
            await engine.wait(recent.id, timeout=10)
            assert await engine.purge() == 5
            assert await engine.events(old.id) == []
            assert len(await engine.events(recent.id)) == 4
            assert (await engine.get_run(old.id)).status is culm.RunStatus.COMPLETED

    async def test_kept_by_default(self, engine: culm.Engine) -> None:
        run = await engine.start_run("count", 1)
        await engine.wait(run.id, timeout=10)
        assert await engine.purge() == 0
        assert len(await engine.events(run.id)) == 4

    async def test_deleting_a_session_deletes_its_events(self, engine: culm.Engine) -> None:
        run = await engine.start_run("count", 1)
        await engine.wait(run.id, timeout=10)
        await engine.delete_session(run.session_id)
        with pytest.raises(culm.NotFound):
            await engine.events(run.id)
