"""When the database refuses a write or cannot be written at all, only what is at fault
fails; the server says so, refuses new work clearly, keeps serving reads and recovers by
itself. Shutdown is bounded whatever the log's state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa

import culm
from culm.errors import IdempotencyKeyReused, StartClashed, Unavailable
from culm.events import Event
from culm.store.sql import SqlStore
from culm.store.starts import START_ATTEMPTS
from tests.conftest import EngineFactory


@asynccontextmanager
async def disk_full(engine: culm.Engine) -> AsyncIterator[None]:
    """The database file may not grow any more: SQLite's own 'database or disk is full'
    for every write that needs a new page, until the block ends."""
    store = engine.store
    assert isinstance(store, SqlStore) and store._writer is not None
    async with store._writer.connect() as conn:  # the writer's one pooled connection
        pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
        await conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
    try:
        yield
    finally:
        if store._writer is not None:  # still open
            async with store._writer.connect() as conn:
                await conn.exec_driver_sql("PRAGMA max_page_count=1073741823")


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class TestDiskFull:
    @pytest.fixture
    def db_url(self, sqlite_url: str) -> str:
        """The full disk is SQLite's page limit: SQLite only."""
        return sqlite_url

    async def test_unhealthy_refuses_new_work_reads_go_on_then_recovers(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine() as engine:
            run = await engine.start_run("ticker", {"n": 400, "delay": 0.001})
            await until(lambda: _at_least(engine, run.id, 20))
            async with disk_full(engine):

                async def unhealthy() -> bool:
                    return engine.health() is not None

                await until(unhealthy)
                assert "full" in (engine.health() or "")
                with pytest.raises(Unavailable):
                    await engine.start_run("echo", "hi")
                # reads answer, with what is committed only
                stored = await engine.get_run(run.id)
                events = await engine.events(run.id, limit=10_000)
                assert stored.state.last_seq == events[-1].seq
                await asyncio.sleep(0.3)  # the run keeps emitting into the queue meanwhile
                assert (await engine.get_run(run.id)).state.last_seq == stored.state.last_seq
            ended = await engine.wait(run.id, timeout=30)
            assert engine.health() is None
            assert ended.status is culm.RunStatus.COMPLETED
            events = await engine.events(run.id, limit=10_000)
            assert [e.seq for e in events] == list(range(1, 404))  # nothing lost
            after = await engine.start_run("echo", "again")
            assert (await engine.wait(after.id, timeout=10)).status is culm.RunStatus.COMPLETED

    async def test_seen_while_nothing_emits_and_gone_once_space_returns(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine() as engine:
            async with disk_full(engine):
                # no run emits: the write that finds the disk full is a start's own
                with pytest.raises(Unavailable):
                    await engine.start_run("echo", "x" * 40_000)
                assert "full" in (engine.health() or "")
                with pytest.raises(Unavailable):
                    await engine.create_session()
                await asyncio.sleep(2.5)  # the probe needs room too: still unhealthy
                assert "full" in (engine.health() or "")
            # nothing else writes: the probe finds the space back
            await until(lambda: _healthy(engine), timeout=5)
            run = await engine.start_run("echo", "x" * 40_000)
            assert (await engine.wait(run.id, timeout=10)).status is culm.RunStatus.COMPLETED

    async def test_shutdown_is_bounded_while_the_disk_is_full(
        self, make_engine: EngineFactory
    ) -> None:
        started = time.monotonic()
        async with make_engine(cancel_grace=0.5) as engine:
            await engine.start_run("ticker", {"n": 100_000, "delay": 0.001})
            async with disk_full(engine):
                await until(lambda: _unhealthy(engine))
                began = time.monotonic()
                await engine.aclose()
                assert time.monotonic() - began < 6
        assert time.monotonic() - started < 20


async def _at_least(engine: culm.Engine, run_id: str, seq: int) -> bool:
    return (await engine.get_run(run_id)).state.last_seq >= seq


async def _unhealthy(engine: culm.Engine) -> bool:
    return engine.health() is not None


async def _healthy(engine: culm.Engine) -> bool:
    return engine.health() is None


class TestWriterFailure:
    async def test_a_failing_writer_reports_itself_and_goes_on(
        self, make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with make_engine() as engine:
            take = engine.log._take
            failures = 0

            def broken(share: int) -> dict[str, object]:
                nonlocal failures
                if failures < 3:
                    failures += 1
                    raise RuntimeError("a bug in the writer")
                return take(share)  # type: ignore[return-value]

            engine.log._take = broken  # type: ignore[assignment,method-assign]
            run = await engine.start_run("ticker", {"n": 50, "delay": 0.001})
            await until(lambda: _unhealthy(engine))
            assert "a bug in the writer" in (engine.health() or "")
            ended = await engine.wait(run.id, timeout=20)
            assert ended.status is culm.RunStatus.COMPLETED
            events = await engine.events(run.id, limit=10_000)
            assert [e.seq for e in events] == list(range(1, 54))  # nothing lost
            assert engine.health() is None
        [record, *_] = [r for r in caplog.records if "writer failed" in r.getMessage()]
        assert record.levelno == logging.ERROR and record.exc_info is not None


class TestRefusedBatch:
    async def test_only_the_run_whose_events_are_refused_fails(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine() as engine:
            bad = await engine.start_run("waiter")
            good = await engine.start_run("ticker", {"n": 200, "delay": 0.001})
            runner = engine.local_runner(bad.id)
            assert runner is not None
            await until(lambda: _at_least(engine, bad.id, 2))
            # an event the database must refuse (its seq is taken), queued with the others
            clash = Event(1, bad.id, bad.session_id, "test.clash", {})
            engine.log.append(clash, runner.state, runner.fence)
            failed = await engine.wait(bad.id, timeout=10)
            assert failed.status is culm.RunStatus.FAILED
            assert failed.state.error is not None
            assert "could not be stored" in failed.state.error
            assert (await engine.wait(good.id, timeout=30)).status is culm.RunStatus.COMPLETED
            events = await engine.events(bad.id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert [e.type for e in events][-1] == "run.failed"
            assert engine.health() is None


class TestIdempotency:
    async def test_concurrent_retries_get_one_run(self, make_engine: EngineFactory) -> None:
        async with make_engine() as engine:
            session = await engine.create_session()
            starts = [
                engine.start("waiter", session_id=session.id, idempotency_key="k")
                for _ in range(10)
            ]
            results = await asyncio.gather(*starts)
            assert sorted(r.created for r in results) == [False] * 9 + [True]
            assert len({r.run.id for r in results}) == 1
            # a retry with if_busy=interrupt does not interrupt the run it names
            again = await engine.start(
                "waiter",
                session_id=session.id,
                idempotency_key="k",
                if_busy=culm.BusyPolicy.INTERRUPT,
            )
            assert (again.created, again.run.id) == (False, results[0].run.id)
            assert (await engine.get_run(again.run.id)).status is culm.RunStatus.RUNNING
            with pytest.raises(IdempotencyKeyReused):
                await engine.start("echo", "x", idempotency_key="k")
            with pytest.raises(IdempotencyKeyReused):
                other = await engine.create_session()
                await engine.start("waiter", session_id=other.id, idempotency_key="k")
            await engine.cancel(again.run.id)


class TestClashingStarts:
    async def test_a_start_that_keeps_clashing_fails_with_a_culm_error(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine() as engine:
            store = engine.store
            assert isinstance(store, SqlStore)
            write = store._starts.run
            attempts = 0

            async def clashing(start: object) -> object:
                nonlocal attempts
                attempts += 1
                raise sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

            store._starts.run = clashing  # type: ignore[assignment,method-assign]
            with pytest.raises(StartClashed):
                await engine.start_run("echo", "x", idempotency_key="k")
            assert attempts == START_ATTEMPTS

            async def clashing_twice(start: object) -> object:
                nonlocal attempts
                attempts += 1
                if attempts <= 2:
                    raise sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE"))
                return await write(start)  # type: ignore[arg-type]

            attempts = 0
            store._starts.run = clashing_twice  # type: ignore[assignment,method-assign]
            run = await engine.start_run("echo", "x", idempotency_key="k")
            assert (await engine.wait(run.id, timeout=10)).status is culm.RunStatus.COMPLETED


class TestBackground:
    async def test_a_failing_background_task_is_logged_with_its_run(
        self, make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def broken() -> None:
            raise RuntimeError("lost in the background")

        async with make_engine() as engine:
            task = engine.executor.background(broken(), run_id="run_x")
            await asyncio.wait([task])
        [record] = [r for r in caplog.records if "lost in the background" in str(r.exc_info)]
        assert record.levelno == logging.ERROR and "run_x" in record.getMessage()

    async def test_shutdown_stops_every_runner_at_once(self, make_engine: EngineFactory) -> None:
        async with make_engine(cancel_grace=1.0) as engine:
            runs = [await engine.start_run("deaf") for _ in range(6)]
            began = time.monotonic()
            await engine.aclose()
            took = time.monotonic() - began
            # one by one this took 6 x (grace + 1) s; together it is one deadline
            assert took < 5, took
        async with make_engine() as engine:
            for run in runs:
                ended = await engine.get_run(run.id)
                assert ended.status is culm.RunStatus.INTERRUPTED


class TestSpawnedRunsRecordTheirGrant:
    async def test_grant_and_depth_are_stored(self, make_engine: EngineFactory) -> None:
        from tests.spawn.agents import app as spawn_app

        async with make_engine(spawn_app) as engine:
            root = await engine.wait((await engine.start_run("root")).id, timeout=30)
            assert root.status is culm.RunStatus.COMPLETED
            children = await engine.children(root.id)
            assert children and all(c.depth == 1 and c.grant is not None for c in children)
            grandchildren = [g for c in children for g in await engine.children(c.id)]
            assert grandchildren and all(g.depth == 2 for g in grandchildren)
            store = engine.store
            assert isinstance(store, SqlStore) and store._reader is not None
            async with store._reader.connect() as conn:
                depths = (await conn.execute(sa.text("SELECT DISTINCT depth FROM runs"))).all()
            assert sorted(d for (d,) in depths) == [0, 1, 2]
