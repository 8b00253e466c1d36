"""A run read on the event loop (SQLite) is never ahead of what was announced.

The read is made on a connection of its own while the writer may be committing on its
thread; the store keeps it only when no commit began that is not announced yet
(``SqlStore.settled``), and otherwise reads on a reader's thread. Reads kept on the loop
are then never ahead of the announcements, even while transactions are under way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import culm
from culm.events import Event
from culm.models import ACTIVE_STATUSES
from culm.store.sql import SqlStore
from culm.store.sqlite_direct import Writer
from tests.agents import app as test_app


async def test_a_run_read_on_the_loop_is_never_ahead_of_the_announcements(
    sqlite_url: str,
) -> None:
    async with culm.Engine(test_app, culm.Settings(database_url=sqlite_url)) as engine:
        store = engine.store
        assert isinstance(store, SqlStore)
        announced: dict[str, int] = {}
        announce = store.on_commit
        assert announce is not None

        def seen(events: Sequence[Event]) -> None:
            for event in events:
                announced[event.run_id] = max(announced.get(event.run_id, 0), event.seq)
            announce(events)

        store.on_commit = seen
        here = store._here
        assert here is not None
        read_here = here.read_run
        kept = during_writes = 0
        ahead: list[tuple[int, int]] = []

        def checked(run_id: str, tenant: str | None) -> Any:
            nonlocal kept, during_writes
            read = read_here(run_id, tenant)
            if read is not None and read[0] is not None and store.settled():  # kept
                kept += 1
                during_writes += store._write_lock.locked()
                if read[0].last_seq > announced.get(run_id, 0):
                    ahead.append((read[0].last_seq, announced.get(run_id, 0)))
            return read

        here.read_run = checked  # type: ignore[method-assign]
        ticks = {"n": 150, "delay": 0.001}
        runs = [await engine.start_run("ticker", ticks) for _ in range(4)]

        async def follow(run_id: str) -> None:
            for _ in range(100_000):
                if (await engine.get_run(run_id)).status.value not in ACTIVE_STATUSES:
                    return
                await asyncio.sleep(0)

        async with asyncio.timeout(60):
            await asyncio.gather(*(follow(r.id) for r in runs for _ in range(3)))
        assert ahead == []
        assert kept > 10
        assert during_writes > 0, "no read kept on the loop overlapped a transaction"


async def test_a_stream_reads_the_run_on_the_loop_while_a_commit_is_under_way(
    sqlite_url: str,
) -> None:
    """A stream follows the log itself, so it reads the run as last committed (``latest``)
    without a trip to a reader's thread while the writer commits; every other read still
    goes there then."""
    async with culm.Engine(test_app, culm.Settings(database_url=sqlite_url)) as engine:
        store, writer, run_id, trips = await _ended_run_counting_reader_trips(engine)
        writer.commits += 1  # a commit has begun on the writer's thread, not announced yet
        try:
            assert not store.settled()
            assert (await store.get_run(run_id, latest=True)).status.value == "completed"
            assert trips == []
            assert (await store.get_run(run_id)).status.value == "completed"
            assert trips == ["reader"]
        finally:
            writer.commits -= 1


async def test_a_read_during_a_transaction_waits_for_it_and_stays_on_the_loop(
    sqlite_url: str,
) -> None:
    """A run read while the store's own transaction is under way waits for it to be
    announced and reads on the loop, rather than on a reader's thread (ten times the CPU);
    a commit nothing here will announce sends it to the reader's thread at once."""
    async with culm.Engine(test_app, culm.Settings(database_url=sqlite_url)) as engine:
        store, writer, run_id, trips = await _ended_run_counting_reader_trips(engine)
        async with store._locked(appends=False):  # a transaction under way...
            writer.commits += 1  # ...whose commit has begun
            read = asyncio.ensure_future(store.get_run(run_id))
            await asyncio.sleep(0.01)
            assert not read.done(), "the read did not wait for the transaction"
        assert (await read).status.value == "completed"
        assert trips == []
        writer.commits += 1  # a commit outside the store: nothing will announce it
        try:
            assert (await store.get_run(run_id)).status.value == "completed"
            assert trips == ["reader"]
        finally:
            writer.commits -= 1


async def _ended_run_counting_reader_trips(
    engine: culm.Engine,
) -> tuple[SqlStore, Writer, str, list[str]]:
    """The store, its writer, a run that has ended, and the list of the store's reads
    made on a reader's thread from now on."""
    store = engine.store
    assert isinstance(store, SqlStore)
    run = await engine.start_run("echo", "hi")
    await engine.wait(run.id, timeout=30)
    writer = store._direct
    assert writer is not None
    trips: list[str] = []
    reader = store._read

    def counted() -> Any:
        trips.append("reader")
        return reader()

    store._read = counted  # type: ignore[method-assign]
    return store, writer, run.id, trips
