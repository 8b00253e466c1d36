"""One session, two API processes and a worker: starts that race with every busy policy
still leave at most one run holding the session, an interrupt asked through either API
process cancels the run where the worker executes it, and queued runs start one after
another in the order they were queued, whichever process queued them."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import culm
from culm.models import BusyPolicy, RunStatus
from tests.cluster.engines import Engines, until
from tests.waiting import until_running

HOLDING = {RunStatus.RUNNING, RunStatus.WAITING}


async def session_runs(engine: culm.Engine, session_id: str) -> list[culm.Run]:
    """Every run of the session, oldest (first queued) first."""
    found = await engine.list_runs(culm.RunFilter(session_id=session_id), limit=500)
    return sorted(found, key=lambda r: r.id)


class TestBusyAcrossProcesses:
    async def test_racing_policies_keep_one_run_and_the_queue_order(self, engines: Engines) -> None:
        async with (
            engines(role="api") as a,
            engines(role="api") as b,
            engines(role="worker", concurrency=8, idle_poll_seconds=1) as worker,
        ):
            first = await a.start_run("waiter")
            session = first.session_id
            await until_running(a, first.id)
            assert worker.local_runner(first.id) is not None

            held: list[int] = []
            racing = True

            async def watch() -> None:  # what a reader sees while the starts race
                while racing:
                    runs = await session_runs(b, session)
                    held.append(sum(1 for r in runs if r.status in HOLDING))
                    await asyncio.sleep(0.01)

            async def one(door: culm.Engine, i: int, policy: BusyPolicy) -> Any:
                interrupts = policy is BusyPolicy.INTERRUPT
                agent, value = ("waiter", None) if interrupts else ("echo", f"#{i}")
                try:
                    return await door.start_run(
                        agent, value, session_id=session, if_busy=policy, by=f"racer {i}"
                    )
                except culm.SessionBusy as exc:
                    return exc

            policies = [BusyPolicy.REJECT, BusyPolicy.ENQUEUE, BusyPolicy.INTERRUPT] * 4
            watcher = asyncio.create_task(watch())
            try:
                results = await asyncio.gather(
                    *(one(a if i % 2 else b, i, p) for i, p in enumerate(policies))
                )
                # the session was never free: one run held it, or a started run waited on it
                rejected = [r for p, r in zip(policies, results, strict=True) if p == "reject"]
                assert all(isinstance(r, culm.SessionBusy) for r in rejected), rejected
                started = [r for r in results if isinstance(r, culm.Run)]
                interrupters = [r for r in started if r.agent == "waiter"]

                # the run on the worker was cancelled by an interrupt from an API process
                ended = await a.wait(first.id, timeout=15)
                assert ended.status is RunStatus.CANCELLED
                last = [e async for e in a.subscribe(first.id)][-1]
                assert last.type == "run.cancelled", last
                reason = last.data.get("reason")
                assert reason in {f"interrupted by run {r.id}" for r in interrupters}, last

                # of the racing interrupts the last stored wins: one runs, the rest are cancelled
                async def settled() -> bool:
                    runs = await session_runs(a, session)
                    return any(r.status is RunStatus.RUNNING for r in runs) and not any(
                        r.agent == "waiter" and r.status is RunStatus.PENDING for r in runs
                    )

                await until(settled)
                runs = {r.id: r for r in await session_runs(a, session)}
                winners = [r for r in interrupters if runs[r.id].status is RunStatus.RUNNING]
                assert len(winners) == 1
                losers = [r for r in interrupters if r not in winners]
                assert all(runs[r.id].status is RunStatus.CANCELLED for r in losers)
                # the queued runs behind the winner wait; more are queued through both doors
                later = [
                    await (a if i % 2 else b).start_run(
                        "echo", f"#{100 + i}", session_id=session, if_busy=BusyPolicy.ENQUEUE
                    )
                    for i in range(6)
                ]
                await b.cancel(winners[0].id)
                for run in later:
                    assert (await a.wait(run.id, timeout=20)).status is RunStatus.COMPLETED
                racing = False
                await watcher
            finally:
                watcher.cancel()

        assert held and max(held) == 1
        runs = await _final(engines, session)
        ran = [r for r in runs if r.state.started_at is not None]
        # queued runs started in the order they were queued (by id, across both doors) ...
        queued = [r for r in ran if r.agent == "echo"]
        assert [r.id for r in sorted(queued, key=_started)] == [r.id for r in queued]
        assert [r.state.output for r in queued][-6:] == [f"#{100 + i}" for i in range(6)]
        # ... and no two runs of the session ever ran at once
        spans = sorted((_started(r), r.state.completed_at or 0.0) for r in ran)
        for (_, end), (begin, _) in itertools.pairwise(spans):
            assert end <= begin


def _started(run: culm.Run) -> float:
    assert run.state.started_at is not None
    return run.state.started_at


async def _final(engines: Engines, session_id: str) -> list[culm.Run]:
    async with engines(role="api") as reader:
        return await session_runs(reader, session_id)
