"""Ownership is fenced: no race of starts, cancels, interrupts or stalled processes leaves
a duplicate seq, a second terminal event, or a run that stays active."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

import culm
from culm.events import Event
from culm.runtime.tail import LogTail
from tests.agents import app as test_app
from tests.conftest import EngineFactory
from tests.hardening import resumable_worker as resumable

ROOT = Path(__file__).resolve().parents[2]


async def assert_one_clean_stream(engine: culm.Engine, run_id: str) -> list[Event]:
    events = await engine.events(run_id, limit=100_000)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), run_id
    assert sum(e.terminal for e in events) == 1, [e.type for e in events]
    assert events[-1].terminal
    return events


class TestConcurrentInterrupts:
    async def test_twenty_interrupting_starts_on_a_busy_session(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine() as engine:
            for _ in range(3):
                first = await engine.start_run("waiter")
                starts = [
                    engine.start_run(
                        "waiter",
                        session_id=first.session_id,
                        if_busy=culm.BusyPolicy.INTERRUPT,
                        by=f"client {i}",
                    )
                    for i in range(20)
                ]
                runs = [first, *await asyncio.gather(*starts)]
                # one of them goes on: the last to interrupt the others
                deadline = time.monotonic() + 20
                while True:
                    active = await engine.store.active_runs(first.session_id)
                    if [a.status for a in active] == [culm.RunStatus.RUNNING]:
                        break
                    assert time.monotonic() < deadline, [(a.id, a.status) for a in active]
                    await asyncio.sleep(0.05)
                for run in active:
                    await engine.cancel(run.id)
                for run in runs:
                    ended = await engine.wait(run.id, timeout=10)
                    assert ended.status.terminal, ended
                    await assert_one_clean_stream(engine, run.id)


class TestTwoEnginesInOneProcess:
    async def test_they_do_not_take_each_other_for_dead(self, make_engine: EngineFactory) -> None:
        async with make_engine() as first:
            run = await first.start_run("waiter")
            async with make_engine() as second:  # recovery runs as it opens
                await second.recover()
                assert (await second.get_run(run.id)).status is culm.RunStatus.RUNNING
            assert (await first.get_run(run.id)).status is culm.RunStatus.RUNNING
            await first.cancel(run.id)
            ended = await first.wait(run.id, timeout=10)
            assert ended.status is culm.RunStatus.CANCELLED
            await assert_one_clean_stream(first, run.id)

    async def test_a_closed_engines_runs_are_recovered_by_another(
        self, make_engine: EngineFactory, db_url: str
    ) -> None:
        async with make_engine() as survivor:
            first = make_engine()
            gone = await first.__aenter__()
            run = await gone.start_run("waiter")
            # the engine is dropped without closing (as if its task group died): its runs
            # are orphaned, and the other engine of this process sees that
            gone.executor.closing = True
            for task in list(gone.executor._tasks):
                task.cancel()
            await asyncio.sleep(0.05)
            from culm.runtime.owners import release_worker_id

            release_worker_id(gone.worker_id)
            await survivor.recover()
            ended = await survivor.get_run(run.id)
            assert ended.status is culm.RunStatus.INTERRUPTED
            await assert_one_clean_stream(survivor, run.id)
            await gone.bus.close()
            await gone.store.close()


class TestLeasesByTheDatabasesClock:
    async def test_engines_with_skewed_clocks_neither_lose_nor_steal_a_lease(
        self, db_url: str
    ) -> None:
        """An engine whose clock is an hour behind keeps its run; one whose clock is an hour
        ahead does not take it over: leases are written and judged by the database's
        clock, never by the engine's."""
        settings = culm.Settings(database_url=db_url, cancel_grace=1.0, lease_seconds=1.0)
        async with culm.Engine(test_app, settings, clock=lambda: time.time() - 3600) as behind:
            run = await behind.start_run("waiter")
            async with culm.Engine(test_app, settings, clock=lambda: time.time() + 3600) as ahead:
                for _ in range(3):
                    await asyncio.sleep(1.0)  # a lease each time, renewed meanwhile
                    await ahead.recover()
                    assert (await ahead.get_run(run.id)).status is culm.RunStatus.RUNNING
                    assert ahead.local_runner(run.id) is None
            assert behind.local_runner(run.id) is not None
            await behind.cancel(run.id)
            ended = await behind.wait(run.id, timeout=10)
            assert ended.status is culm.RunStatus.CANCELLED
            await assert_one_clean_stream(behind, run.id)


def start_worker(db_url: str, lease: float) -> subprocess.Popen[str]:
    env = {**os.environ, "CULM_LEASE_SECONDS": str(lease)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.core.crash_worker", db_url, "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 50:  # both runs are under way
        assert time.monotonic() < deadline, "the worker delivered too little"
        line = proc.stdout.readline()
        assert line, "the worker exited early"
        seen += not line.startswith("queued")

    # keep reading what it prints, so a full pipe never stalls it mid-transaction
    def drain(out: IO[str]) -> None:
        with out:
            out.read()

    threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
    return proc


def stop_between_transactions(proc: subprocess.Popen[str], db_url: str) -> None:
    """SIGSTOP the process at a moment it holds no SQLite write lock: with SQLite one
    stopped writer inside its transaction blocks every writer until it goes on."""
    path = db_url.removeprefix("sqlite:///")
    for _ in range(50):
        os.kill(proc.pid, signal.SIGSTOP)
        probe = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.01)
        finally:
            probe.close()
    raise AssertionError("the worker never let go of the write lock")


class TestStalledOwner:
    @pytest.fixture
    def db_url(self, sqlite_url: str) -> str:
        """The stalled process is stopped between SQLite transactions, found by probing
        SQLite's write lock: SQLite only."""
        return sqlite_url

    async def test_a_process_stopped_past_its_lease_writes_nothing_more(
        self, db_url: str, make_engine: EngineFactory
    ) -> None:
        """SIGSTOP past the lease: another engine ends its runs; after SIGCONT the stalled
        process's writes are fenced out, so each stream has one end and nothing after."""
        proc = start_worker(db_url, lease=1.0)
        try:
            stop_between_transactions(proc, db_url)
            await asyncio.sleep(1.5)  # past the lease, by the database's clock
            async with make_engine(lease_seconds=1.0) as engine:  # recovers as it opens
                running = await engine.list_runs(culm.RunFilter(agent="ticker"))
                assert len(running) == 2
                for run in running:
                    ended = await engine.get_run(run.id)
                    assert ended.status is culm.RunStatus.INTERRUPTED
                    assert ended.state.error == "its process stopped responding"
                before = {r.id: (await engine.get_run(r.id)).state.last_seq for r in running}
                os.kill(proc.pid, signal.SIGCONT)
                await asyncio.sleep(1.5)  # it runs on, believing it still owns them
                for run in running:
                    events = await assert_one_clean_stream(engine, run.id)
                    assert events[-1].type == "run.interrupted"
                    assert len(events) == before[run.id]
        finally:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)

    async def test_a_resumed_runs_stalled_owner_writes_nothing_more(
        self, db_url: str, make_engine: EngineFactory, tmp_path: Path
    ) -> None:
        """SIGSTOP past the lease of resumable runs: another engine resumes them (it does
        not end them); after SIGCONT the stalled process finds them taken over and stops
        them, writing nothing, while the new owner goes on with one clean stream each."""
        errors = tmp_path / "worker.err"
        proc, run_ids = start_resumable_worker(db_url, errors)
        try:
            stop_between_transactions(proc, db_url)
            await asyncio.sleep(1.5)  # past the lease, by the database's clock
            async with make_engine(resumable.app, lease_seconds=1.0) as engine:
                for run_id in run_ids:  # resumed as it opened, not ended
                    assert (await engine.get_run(run_id)).attempt == 1
                    await until_ticks_after_resume(engine, run_id, 10)
                os.kill(proc.pid, signal.SIGCONT)
                await asyncio.sleep(1.5)  # it runs on, until it learns it lost them
                for run_id in run_ids:
                    await until_ticks_after_resume(engine, run_id, 20)
                    await engine.cancel(run_id)
                    ended = await engine.wait(run_id, timeout=10)
                    assert ended.status is culm.RunStatus.CANCELLED, ended.state.error
                    events = await assert_one_clean_stream(engine, run_id)
                    kinds = [e.type for e in events]
                    assert kinds.count("run.resumed") == 1
                    # one counter, never repeated nor skipped: nobody else wrote a tick
                    ticks = [e.data["i"] for e in events if e.type == "tick"]
                    assert ticks == list(range(len(ticks)))
        finally:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        said = errors.read_text()
        for run_id in run_ids:
            assert f"run {run_id} was ended or taken over elsewhere; stopping it here" in said


def start_resumable_worker(db_url: str, errors: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """A worker process with two resumable runs under way (lease: 1 s), its stderr to
    ``errors``."""
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hardening.resumable_worker", db_url, "2"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "CULM_LEASE_SECONDS": "1.0"},
        )
    assert proc.stdout is not None
    run_ids = [proc.stdout.readline().strip() for _ in range(2)]  # both under way
    assert all(run_ids), errors.read_text()
    return proc, run_ids


async def until_ticks_after_resume(engine: culm.Engine, run_id: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        kinds = [e.type for e in await engine.events(run_id, limit=100_000)]
        if "run.resumed" in kinds and kinds[kinds.index("run.resumed") :].count("tick") >= n:
            return
        assert time.monotonic() < deadline, f"run {run_id} did not go on after its resume"
        await asyncio.sleep(0.05)


class TestLogTail:
    async def test_events_committed_elsewhere_reach_followers_here(
        self, make_engine: EngineFactory
    ) -> None:
        """A follower in one engine sees a run executed by another engine on the same
        database, without polling the log itself."""
        async with make_engine(idle_poll_seconds=0.1) as watcher, make_engine() as executor:
            run = await executor.start_run("ticker", {"n": 20, "delay": 0.01})
            seen = [e.seq async for e in watcher.subscribe(run.id)]
            assert seen == list(range(1, len(seen) + 1)) and len(seen) == 23

    async def test_only_what_others_wrote_is_read_back(self, make_engine: EngineFactory) -> None:
        async with make_engine() as engine:
            published: list[int] = []
            tail = LogTail(engine.store, lambda events: published.extend(e.pos for e in events))
            await tail.open()
            engine.store.on_commit = tail.announce
            run = await engine.start_run("count", 50)
            await engine.wait(run.id, timeout=10)
            mine = list(published)
            await tail.poll()
            assert published == mine  # nothing new from anyone else: nothing re-read
