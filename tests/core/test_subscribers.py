"""Every subscriber sees every event of a run exactly once, in order, however it follows."""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import aclosing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import culm
from tests.agents import app
from tests.conftest import EngineFactory
from tests.waiting import until_event

Row = tuple[int, str, object]


def rows(events: list[culm.Event]) -> list[Row]:
    return [(e.seq, e.type, e.data) for e in events]


async def collect(
    engine: culm.Engine, run_id: str, after: int = 0, pause: float = 0.0
) -> list[culm.Event]:
    seen = []
    async for event in engine.subscribe(run_id, after):
        seen.append(event)
        if pause:
            await asyncio.sleep(pause)
    return seen


async def reconnecting(engine: culm.Engine, run_id: str, drops: list[int]) -> list[culm.Event]:
    """Follows the run, dropping the connection after each count in ``drops`` and
    resuming from the last sequence number seen."""
    seen: list[culm.Event] = []
    for drop_after in [*drops, None]:
        last = seen[-1].seq if seen else 0
        async with aclosing(engine.subscribe(run_id, last)) as stream:
            async for event in stream:
                seen.append(event)
                if drop_after is not None and len(seen) >= drop_after:
                    break
        if seen and seen[-1].terminal:
            break
    return seen


async def scenario(db: Path, drops: list[int], n: int) -> None:
    settings = culm.Settings(database_url=f"sqlite:///{db}", subscriber_buffer=8)
    async with culm.Engine(app, settings) as engine:
        run = await engine.start_run("ticker", {"n": n, "delay": 0.001})
        early = asyncio.create_task(collect(engine, run.id))
        slow = asyncio.create_task(collect(engine, run.id, pause=0.003))
        flaky = asyncio.create_task(reconnecting(engine, run.id, drops))
        await until_event(engine, run.id, seq=n // 2)
        mid = asyncio.create_task(collect(engine, run.id))
        await engine.wait(run.id, timeout=30)
        late = await collect(engine, run.id)
        results = [late, *await asyncio.gather(early, slow, flaky, mid)]
        stored = await engine.events(run.id)
    expected = rows(stored)
    assert [r[0] for r in expected] == list(range(1, n + 4))
    assert expected[-1][1] == "run.completed"
    for seen in results:
        assert rows(seen) == expected


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drops=st.lists(st.integers(min_value=1, max_value=64), max_size=6).map(sorted))
def test_all_subscribers_see_the_same_complete_stream(drops: list[int]) -> None:
    """Late, mid-run, slow and reconnecting subscribers all receive 1..N exactly once."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "culm.db", drops, n=60))


class TestFollowing:
    """What a follower may rely on."""

    async def test_resume_from_any_sequence_number(self, engine: culm.Engine) -> None:
        run = await engine.start_run("count", 20)
        everything = await collect(engine, run.id)
        for after in (0, 1, 7, 21, 22):
            tail = await collect(engine, run.id, after)
            assert rows(tail) == rows(everything[after:])

    async def test_a_follower_far_behind_continues_from_the_log(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine(subscriber_buffer=4) as engine:
            run = await engine.start_run("count", 2_000)
            slow = await collect(engine, run.id, pause=0.0001)
            assert [e.seq for e in slow] == list(range(1, 2_004))

    async def test_unknown_run_is_not_found(self, engine: culm.Engine) -> None:
        stream = engine.subscribe("run_nope")
        try:
            await anext(stream)
        except culm.NotFound as exc:
            assert "run_nope" in str(exc)
        else:
            raise AssertionError("expected NotFound")

    async def test_another_tenants_run_is_not_found(self, engine: culm.Engine) -> None:
        run = await engine.start_run("echo", "hi", tenant="acme")
        assert (await engine.wait(run.id, timeout=10, tenant="acme")).status.terminal
        for call in (
            lambda: anext(engine.subscribe(run.id, tenant="other")),
            lambda: engine.get_run(run.id, tenant="other"),
            lambda: engine.cancel(run.id, tenant="other"),
        ):
            try:
                await call()
            except culm.NotFound:
                continue
            raise AssertionError("another tenant's run must answer NotFound")

    async def test_session_stream_shows_every_run_in_log_order(self, engine: culm.Engine) -> None:
        first = await engine.start_run("count", 3)
        await engine.wait(first.id, timeout=10)
        second = await engine.start_run("count", 2, session_id=first.session_id)
        await engine.wait(second.id, timeout=10)
        seen: list[culm.Event] = []
        async with aclosing(engine.subscribe_session(first.session_id)) as stream:
            async for batch in stream:
                seen.extend(batch)
                if len(seen) >= 11:
                    break
        assert [(e.run_id, e.seq) for e in seen] == [
            *[(first.id, s) for s in range(1, 7)],
            *[(second.id, s) for s in range(1, 6)],
        ]
        assert [e.pos for e in seen] == sorted(e.pos for e in seen)

    async def test_cursor_at_the_end_of_an_ended_run_yields_nothing(
        self, engine: culm.Engine
    ) -> None:
        run = await engine.start_run("count", 2)
        await engine.wait(run.id, timeout=10)
        async with asyncio.timeout(5):
            assert await collect(engine, run.id, after=5) == []
            assert await collect(engine, run.id, after=50) == []

    async def test_cursor_past_the_end_of_a_live_run_is_refused(self, engine: culm.Engine) -> None:
        run = await engine.start_run("waiter")
        await until_event(engine, run.id, "run.started")
        with pytest.raises(culm.InvalidInput, match="has no event 9 yet"):
            await anext(engine.subscribe(run.id, after=9))
        await engine.cancel(run.id)
