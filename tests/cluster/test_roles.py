"""API processes execute nothing, workers claim within their concurrency and the tenants'
limits, and a cancel asked anywhere reaches the worker executing the run. Each engine here
stands for a process: its own database connections and its own bus connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import culm
from tests.agents import app
from tests.cluster.engines import Engines, until
from tests.waiting import until_running

only_echo = culm.App()


@only_echo.agent
async def echo(run: culm.RunContext, input: str) -> str:
    return input


class TestRoles:
    async def test_an_api_process_queues_and_a_worker_executes(self, engines: Engines) -> None:
        async with engines(role="api") as api:
            run = await api.start_run("echo", "hi")
            assert run.status is culm.RunStatus.PENDING
            assert api.executor.active == 0
            async with engines(role="worker", concurrency=4) as worker:
                ended = await api.wait(run.id, timeout=15)
                assert ended.status is culm.RunStatus.COMPLETED
                assert ended.state.output == "hi"
                stream = [e async for e in api.subscribe(run.id)]
                assert [e.type for e in stream][-1] == "run.completed"
                owner = await worker.get_run(run.id)
                assert owner.status is culm.RunStatus.COMPLETED

    async def test_a_worker_claims_only_runs_of_agents_it_has(self, engines: Engines) -> None:
        async with engines(role="api") as api, engines(only_echo, role="worker"):
            ticking = await api.start_run("ticker", {"n": 1, "delay": 0})
            echoed = await api.start_run("echo", "x")
            assert (await api.wait(echoed.id, timeout=15)).status is culm.RunStatus.COMPLETED
            assert (await api.get_run(ticking.id)).status is culm.RunStatus.PENDING
            async with engines(role="worker"):
                done = await api.wait(ticking.id, timeout=15)
                assert done.status is culm.RunStatus.COMPLETED

    async def test_a_worker_runs_at_most_its_concurrency(self, engines: Engines) -> None:
        async with engines(role="api") as api, engines(role="worker", concurrency=2) as worker:
            runs = [await api.start_run("waiter") for _ in range(5)]
            await until(lambda: _count(api, culm.RunStatus.RUNNING, 2))
            await asyncio.sleep(0.2)  # and no more, however long it looks
            assert worker.executor.active == 2
            first = [r for r in runs if (await api.get_run(r.id)).status.value == "running"]
            await api.cancel(first[0].id)
            await until(lambda: _count(api, culm.RunStatus.CANCELLED, 1))
            await until(lambda: _count(api, culm.RunStatus.RUNNING, 2))  # the next one
            await until(lambda: _count(api, culm.RunStatus.PENDING, 2))
            assert worker.executor.active == 2

    async def test_a_cancel_asked_anywhere_stops_the_run_where_it_runs(
        self, engines: Engines
    ) -> None:
        async with (
            engines(role="api") as a,
            engines(role="api") as c,
            engines(role="worker") as worker,
        ):
            run = await a.start_run("waiter")
            await until_running(a, run.id)
            assert worker.local_runner(run.id) is not None
            asked = time.monotonic()
            answer = await c.cancel(run.id, by="carol", reason="enough")
            assert answer.status in (culm.RunStatus.RUNNING, culm.RunStatus.CANCELLED)
            ended = await a.wait(run.id, timeout=10)
            assert time.monotonic() - asked < 5  # the bus, not a periodic look
            assert ended.status is culm.RunStatus.CANCELLED
            last = (await a.events(run.id))[-1]
            assert last.type == "run.cancelled"
            assert last.data["by"] == "carol" and last.data["reason"] == "enough"
            assert (await c.cancel(run.id)).status is culm.RunStatus.CANCELLED  # idempotent

    async def test_a_cancel_whose_notice_is_lost_is_found_on_the_run(
        self, engines: Engines, pg_url: str
    ) -> None:
        deaf = culm.Settings(database_url=pg_url, bus_url="local", role="api", idle_poll_seconds=30)
        async with (
            engines(role="worker", idle_poll_seconds=0.3) as worker,
            culm.Engine(app, deaf) as api,
        ):
            run = await api.start_run("waiter")
            await until(lambda: _has_runner(worker, run.id))
            await api.cancel(run.id)
            ended = await worker.wait(run.id, timeout=10)
            assert ended.status is culm.RunStatus.CANCELLED

    async def test_a_tenant_at_its_limit_does_not_hold_up_another(self, engines: Engines) -> None:
        async with engines(role="api") as api, engines(role="worker", tenant_max_running=3):
            burst = [await api.start_run("waiter", tenant="burst") for _ in range(500)]
            await until(lambda: _count(api, culm.RunStatus.RUNNING, 3))
            calm = await api.start_run("echo", "me first", tenant="calm")
            assert (await api.wait(calm.id, timeout=10)).status is culm.RunStatus.COMPLETED
            statuses = [(await api.get_run(r.id)).status for r in burst]
            assert statuses[:3] == [culm.RunStatus.RUNNING] * 3  # oldest first, in order
            assert set(statuses[3:]) == {culm.RunStatus.PENDING}
            await api.cancel(burst[0].id)
            await until(lambda: _status(api, burst[3].id, culm.RunStatus.RUNNING))
            assert (await api.get_run(burst[4].id)).status is culm.RunStatus.PENDING


class TestDrain:
    async def test_draining_stops_claiming_and_lets_runs_end(self, engines: Engines) -> None:
        async with engines(role="api") as api, engines(role="worker") as worker:
            going = await api.start_run("ticker", {"n": 20, "delay": 0.02})
            await until_running(api, going.id)
            left = await worker.drain(10.0)
            assert left == 0
            assert (await api.get_run(going.id)).status is culm.RunStatus.COMPLETED
            later = await api.start_run("echo", "after")
            await asyncio.sleep(0.5)
            assert (await api.get_run(later.id)).status is culm.RunStatus.PENDING

    async def test_a_draining_worker_resumes_no_other_workers_runs(
        self, engines: Engines, tmp_path: Any
    ) -> None:
        """It is about to hand back its own runs: taking over others' would only delay them
        (and spend their resumes)."""
        gate = {"n": 2, "delay": 0.01, "gate": str(tmp_path / "gate")}
        async with engines(role="api") as api, engines(role="worker", lease_seconds=1) as late:
            await late.drain(0)
            async with engines(role="worker", concurrency=1) as first:
                run = await api.start_run("stepper", gate)
                await until(lambda: _has_runner(first, run.id))
            # handed back, held by nobody; ``late`` looks every half second
            await asyncio.sleep(1.5)
            assert late.local_runner(run.id) is None
            assert await _owner(api, run.id) is None
            async with engines(role="worker") as taker:
                await until(lambda: _has_runner(taker, run.id))
                (tmp_path / "gate").touch()
                ended = await api.wait(run.id, timeout=15)
                assert ended.status is culm.RunStatus.COMPLETED
                assert ended.attempt == 1


async def _count(engine: culm.Engine, status: culm.RunStatus, n: int) -> bool:
    return len(await engine.list_runs(culm.RunFilter(status=status), limit=500)) == n


async def _status(engine: culm.Engine, run_id: str, status: culm.RunStatus) -> bool:
    return (await engine.get_run(run_id)).status is status


async def _has_runner(engine: culm.Engine, run_id: str) -> bool:
    return engine.local_runner(run_id) is not None


class TestSpawnAcrossWorkers:
    async def test_children_run_on_any_worker_and_the_parent_waits_through_the_log(
        self, engines: Engines
    ) -> None:
        from tests.spawn.agents import app as spawning

        async with (
            engines(spawning, role="api") as api,
            engines(spawning, role="worker", concurrency=2) as w1,
            engines(spawning, role="worker", concurrency=2) as w2,
        ):
            # children that take a while: one worker alone cannot run them all one after
            # another before the other claims some
            leaf = {"ticks": 3, "delay": 0.2, "value": 1}
            parent = await api.start_run("fan", {"n": 4, "leaf": leaf})
            ended = await api.wait(parent.id, timeout=30)
            assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
            assert ended.state.output == {"started": 4, "refused": None, "results": [1] * 4}
            children = await api.children(parent.id)
            assert len(children) == 4
            assert all(c.status is culm.RunStatus.COMPLETED for c in children)
            owners = {
                (await _owner(api, r.id)) for r in [parent, *children]
            }  # with two places each, the tree needs both workers
            assert owners == {w1.worker_id, w2.worker_id}


async def _owner(engine: culm.Engine, run_id: str) -> str | None:
    import sqlalchemy as sa

    from culm.store.schema import runs

    async with engine.store._read() as conn:  # type: ignore[attr-defined]
        owner: str | None = (
            await conn.execute(sa.select(runs.c.worker_id).where(runs.c.id == run_id))
        ).scalar()
    return owner


asking = culm.App()


@asking.agent(resume=True)
async def ask(run: culm.RunContext, input: str) -> str:
    await run.emit("asking.started", {"input": input})
    return f"{input}, {await run.ask('Whom?')}"


class TestWaitingAcrossProcesses:
    async def test_answered_in_an_api_process_and_taken_up_by_another_worker(
        self, engines: Engines
    ) -> None:
        async with engines(asking, role="api") as api:
            async with engines(asking, role="worker", concurrency=4) as first:
                run = await api.start_run("ask", "hello")
                await until(lambda: _is(api, run.id, culm.RunStatus.WAITING))
                await until(lambda: _unheld(api, run.id))
                assert first.executor.active == 0  # a waiting run holds no worker
            # the first worker is gone; the answer comes through the API process, and the
            # next worker to hear of it takes the run up (on the bus: no polling here)
            async with engines(asking, role="worker", concurrency=4):
                waiting = (await api.get_run(run.id)).state.waiting
                assert waiting is not None
                await api.answer(run.id, waiting["call_id"], answer="world")
                ended = await api.wait(run.id, timeout=15)
        assert ended.status is culm.RunStatus.COMPLETED
        assert ended.state.output == "hello, world"
        kinds = [e.type for e in await api_events(engines, run.id)]
        assert kinds.count("asking.started") == 1  # matched on replay, not emitted again


async def _is(engine: culm.Engine, run_id: str, status: culm.RunStatus) -> bool:
    return (await engine.get_run(run_id)).status is status


async def _unheld(engine: culm.Engine, run_id: str) -> bool:
    owner = await engine.store.ownership(run_id)
    return owner is not None and owner.worker_id is None


async def api_events(engines: Engines, run_id: str) -> list[culm.Event]:
    async with engines(asking, role="api") as api:
        return await api.events(run_id, limit=1000)
