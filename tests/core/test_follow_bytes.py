"""A stream catching up reads the log in slices bounded in bytes, not a thousand events at a
time: a slow client of a run of large events must not make the server hold megabytes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

import culm
from culm.events import Event
from tests.api.edge_agents import app as edge_app
from tests.conftest import EngineFactory

BUDGET = 128 * 1024
"""``max_page_bytes`` in these tests: what one read of the log may hold."""


class Reads:
    """Wraps a store's reads of the log, recording each read's events and data bytes."""

    def __init__(self, engine: culm.Engine) -> None:
        self.sizes: list[tuple[int, int]] = []
        store = engine.store
        run_reads = store.read_events
        session_reads = store.read_session_events

        async def read_events(run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
            return self._count(await run_reads(run_id, after, limit))

        async def read_session_events(
            ids: Sequence[str], after: int = 0, limit: int = 1000
        ) -> list[Event]:
            return self._count(await session_reads(ids, after, limit))

        store.read_events = read_events  # type: ignore[method-assign]
        store.read_session_events = read_session_events  # type: ignore[method-assign]

    def _count(self, page: list[Event]) -> list[Event]:
        self.sizes.append((len(page), sum(len(e.data_json()) for e in page)))
        return page


@pytest.fixture
def settings() -> dict[str, int]:
    # reads go to the store (no cache of recent events), with a small page budget
    return {"recent_events_bytes": 0, "max_page_bytes": BUDGET, "max_event_bytes": 65_536}


async def _bulky(engine: culm.Engine, n: int, size: int) -> culm.Run:
    run = await engine.start_run("bulky", {"n": n, "size": size})
    ended = await engine.wait(run.id, timeout=60)
    assert ended.status is culm.RunStatus.COMPLETED
    return ended


class TestCatchUp:
    async def test_a_run_of_20_kb_events(
        self, make_engine: EngineFactory, settings: dict[str, int]
    ) -> None:
        async with make_engine(edge_app, **settings) as engine:
            run = await _bulky(engine, 300, 20_000)
            reads = Reads(engine)
            seqs = [e.seq async for e in engine.subscribe(run.id)]
            assert seqs == list(range(1, run.state.last_seq + 1))
            assert reads.sizes
            assert max(size for _, size in reads.sizes) <= BUDGET
            # and not one event at a time either
            assert len(reads.sizes) < 3 * 300 * 20_000 // BUDGET

    async def test_a_session_of_20_kb_events(
        self, make_engine: EngineFactory, settings: dict[str, int]
    ) -> None:
        async with make_engine(edge_app, **settings) as engine:
            run = await _bulky(engine, 300, 20_000)
            reads = Reads(engine)
            seen: list[int] = []
            async with asyncio.timeout(30):
                async for batch in engine.subscribe_session(run.session_id):
                    seen.extend(e.seq for e in batch)
                    if seen[-1] == run.state.last_seq:
                        break
            assert seen == list(range(1, run.state.last_seq + 1))
            assert max(size for _, size in reads.sizes) <= BUDGET

    async def test_small_events_are_still_read_a_thousand_at_a_time(
        self, make_engine: EngineFactory, settings: dict[str, int]
    ) -> None:
        async with make_engine(edge_app, **settings) as engine:
            run = await _bulky(engine, 3_000, 10)
            reads = Reads(engine)
            seqs = [e.seq async for e in engine.subscribe(run.id)]
            assert seqs == list(range(1, run.state.last_seq + 1))
            # the first read assumes events as large as allowed, then the slices grow
            assert len(reads.sizes) <= 14
            assert max(count for count, _ in reads.sizes) == 1_000
