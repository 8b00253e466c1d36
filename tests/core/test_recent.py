"""The recent-events cache behind the streams: gap-free ranges, bounded, never wrong."""

from __future__ import annotations

from typing import Any, cast

import pytest

import culm
from culm.bus import LocalBus
from culm.events import Event
from culm.runtime.recent import RecentEvents, RecordingBus, event_cost
from culm.store import Store
from tests.conftest import EngineFactory


class FakeStore:
    """Answers reads from a dict and counts them, to see when the cache falls back."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.reads = 0

    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        self.reads += 1
        found = [e for e in self.events if e.run_id == run_id and e.seq > after]
        return found[:limit]


def events(run_id: str, first: int, last: int) -> list[Event]:
    return [Event(seq, run_id, "ses", "t", {}) for seq in range(first, last + 1)]


def cache(stored: list[Event], limit: int = 100) -> tuple[RecentEvents, FakeStore]:
    """A cache with room for ``limit`` of these (empty-data) events."""
    store = FakeStore(stored)
    return RecentEvents(cast(Store, store), limit * event_cost(events("x", 1, 1)[0])), store


def seqs(page: list[Event]) -> list[int]:
    return [e.seq for e in page]


class TestRecentEvents:
    """Reads inside the remembered range come from memory; every other read from the store."""

    async def test_reads_inside_the_range(self) -> None:
        recent, store = cache(events("r", 1, 10))
        recent.record(events("r", 1, 10))
        assert seqs(await recent.read_events("r", 0, 1000)) == list(range(1, 11))
        assert seqs(await recent.read_events("r", 4, 3)) == [5, 6, 7]
        assert seqs(await recent.read_events("r", 9)) == [10]
        assert store.reads == 0
        assert await recent.read_events("r", 10) == []  # nothing newer known here: ask
        assert store.reads == 1

    async def test_a_range_that_starts_mid_stream(self) -> None:
        recent, store = cache(events("r", 1, 10))
        recent.record(events("r", 6, 10))
        assert seqs(await recent.read_events("r", 5)) == [6, 7, 8, 9, 10]
        assert store.reads == 0
        assert seqs(await recent.read_events("r", 2)) == list(range(3, 11))
        assert store.reads == 1

    async def test_a_gap_restarts_the_range(self) -> None:
        recent, store = cache(events("r", 1, 12))
        recent.record(events("r", 1, 5))
        recent.record(events("r", 8, 12))  # 6 and 7 went elsewhere
        assert seqs(await recent.read_events("r", 7)) == [8, 9, 10, 11, 12]
        assert store.reads == 0
        assert seqs(await recent.read_events("r", 3)) == list(range(4, 13))
        assert store.reads == 1
        assert len(recent) == 5

    async def test_bounded_dropping_the_least_recent(self) -> None:
        recent, store = cache(events("a", 1, 60) + events("b", 1, 60), limit=100)
        recent.record(events("a", 1, 60))
        recent.record(events("b", 1, 60))
        assert len(recent) <= 100
        assert seqs(await recent.read_events("b", 0)) == list(range(1, 61))
        assert store.reads == 0
        assert seqs(await recent.read_events("a", 0)) == list(range(1, 61))
        assert store.reads == 1  # a's oldest events were dropped

    async def test_one_huge_run_keeps_its_newest_events(self) -> None:
        recent, _ = cache([], limit=100)
        for first in range(1, 1001, 50):
            recent.record(events("big", first, first + 49))
        assert len(recent) <= 100
        assert seqs(await recent.read_events("big", 990)) == list(range(991, 1001))

    async def test_bounded_in_bytes_not_events(self) -> None:
        """Twenty-kilobyte events fill a one-megabyte cache after about twenty-five of them
        (each keeps its data's JSON twice: alone, and within the event's own JSON)."""
        recent = RecentEvents(cast(Store, FakeStore([])), 1_048_576)
        big = {"text": "x" * 20_000}
        for seq in range(1, 501):
            recent.record([Event(seq, "big", "ses", "t", big)])
        assert recent.bytes <= 1_048_576
        assert 20 <= len(recent) <= 26

    async def test_a_commit_of_several_runs_in_turn(self) -> None:
        """A batch may hold runs' events in several slices each: every run's range grows
        in order, and a gap inside a slice starts the range again after it."""
        recent, store = cache([])
        a, b = events("a", 1, 6), events("b", 1, 3)
        recent.record([a[0], a[1], b[0], a[2], b[1], b[2], a[3]])
        assert seqs(await recent.read_events("a", 0)) == [1, 2, 3, 4]
        assert seqs(await recent.read_events("b", 0)) == [1, 2, 3]
        recent.record([a[5]])  # a gap: 5 is missing, so only 6 on is known here
        assert seqs(await recent.read_events("a", 5)) == [6]
        assert store.reads == 0
        await recent.read_events("a", 0)
        assert store.reads == 1
        assert len(recent) == 4 and recent.bytes == 4 * event_cost(a[0])

    async def test_an_event_announced_twice_is_kept_once(self) -> None:
        recent, store = cache([])
        recent.record(events("r", 1, 5))
        recent.record(events("r", 4, 6))  # the log's tail repeats what was announced
        assert seqs(await recent.read_events("r", 0)) == [1, 2, 3, 4, 5, 6]
        assert store.reads == 0

    async def test_disabled(self) -> None:
        recent, store = cache(events("r", 1, 3), limit=0)
        recent.record(events("r", 1, 3))
        assert len(recent) == 0
        assert seqs(await recent.read_events("r", 0)) == [1, 2, 3]
        assert store.reads == 1


class TestRecordingBus:
    """The bus records a batch before any subscriber hears of it."""

    async def test_recorded_before_delivery(self) -> None:
        recent, store = cache([])
        bus = RecordingBus(LocalBus(), recent)
        seen: list[Any] = []
        with bus.subscribe((("run", "r"),), 10) as feed:
            bus.publish(events("r", 1, 3))
            seen = await feed.next(1)
            assert seqs(await recent.read_events("r", 0)) == [1, 2, 3]
        assert seqs(seen) == [1, 2, 3]
        assert store.reads == 0
        assert bus.subscriber_count == 0


class TestEngineReadsRecentEventsFromMemory:
    """Followers catching up on a recent run share the engine's copy of its events."""

    async def test_a_recent_run_is_replayed_without_the_database(
        self, engine: culm.Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        run = await engine.start_run("count", 5)
        await engine.wait(run.id, timeout=10)

        async def no_database(*args: Any, **kwargs: Any) -> list[Event]:
            raise AssertionError("read the database for a recent run")

        monkeypatch.setattr(engine.store, "read_events", no_database)
        assert [e.seq async for e in engine.subscribe(run.id)] == list(range(1, 9))
        assert [e.seq for e in await engine.events(run.id, after=3)] == list(range(4, 9))

    async def test_turned_off_it_reads_the_database(self, make_engine: EngineFactory) -> None:
        async with make_engine(recent_events_bytes=0) as engine:
            run = await engine.start_run("count", 2)
            await engine.wait(run.id, timeout=10)
            assert engine.recent is None
            assert [e.seq async for e in engine.subscribe(run.id)] == [1, 2, 3, 4, 5]

    async def test_a_page_is_never_behind_the_run(self, engine: culm.Engine) -> None:
        """Memory may lag a commit another process made by a moment; a client that read
        the run ended finds its end in the page all the same."""
        run = await engine.start_run("count", 3)
        await engine.wait(run.id, timeout=10)
        assert engine.recent is not None
        # as when the terminal event, committed elsewhere, has not reached memory yet
        engine.recent._runs[run.id].pop()
        page = await engine.events(run.id)
        assert [e.seq for e in page] == [1, 2, 3, 4, 5, 6]
        assert page[-1].type == "run.completed"
