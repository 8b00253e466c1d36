"""Concurrent starts share one commit, and one start's failure is its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from culm.config import Settings
from culm.errors import NotFound, SessionBusy
from culm.models import RunStatus
from culm.store import Store, open_store
from tests.store.contract import pending, session


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = open_store(Settings(database_url=db_url))
    await s.open()
    yield s
    await s.close()


async def create(store: Store, s, **kw):  # type: ignore[no-untyped-def]
    run, queued = pending(s)
    created = await store.create_run(
        run,
        queued,
        reject_if_busy=kw.get("reject", False),
        owner="w",
        lease_seconds=9.0,
        claim=True,
        new_session=kw.get("new"),
    )
    return run, created.ahead


class TestGroupedStarts:
    async def test_concurrent_starts_on_one_session_queue_in_order(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        results = await asyncio.gather(*(create(store, s) for _ in range(20)))
        first = results[0][0]
        assert results[0][1] is None
        assert all(ahead == first.id for _, ahead in results[1:])
        active = await store.active_runs(s.id)
        assert [r.id for r in active] == [run.id for run, _ in results]
        assert [r.status for r in active] == [RunStatus.RUNNING] + [RunStatus.PENDING] * 19

    async def test_a_refusal_does_not_undo_the_others(self, store: Store) -> None:
        busy = session()
        await store.create_session(busy)
        await create(store, busy)
        outcomes = await asyncio.gather(
            create(store, session(), new=None),  # unknown session: refused
            create(store, busy, reject=True),  # busy: refused
            *(create(store, fresh, new=fresh) for fresh in [session() for _ in range(5)]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], NotFound)
        assert isinstance(outcomes[1], SessionBusy)
        for run, ahead in outcomes[2:]:  # type: ignore[misc]
            assert ahead is None
            assert (await store.get_run(run.id)).status is RunStatus.RUNNING

    async def test_a_failing_write_fails_alone(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        run, queued = pending(s)
        await store.create_run(run, queued, reject_if_busy=False, owner="w", lease_seconds=9.0)

        async def duplicate() -> None:  # the same run id again: the database refuses it
            await store.create_run(run, queued, reject_if_busy=False, owner="w", lease_seconds=9)

        fresh = [session() for _ in range(5)]
        outcomes = await asyncio.gather(
            duplicate(), *(create(store, f, new=f) for f in fresh), return_exceptions=True
        )
        assert isinstance(outcomes[0], Exception) and not isinstance(outcomes[0], NotFound)
        for made in outcomes[1:]:
            run_made, _ = made  # type: ignore[misc]
            assert (await store.get_run(run_made.id)).status is RunStatus.RUNNING

    async def test_concurrent_retries_with_one_key_make_one_run(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        runs = [pending(s, idempotency_key="same") for _ in range(10)]
        made = await asyncio.gather(
            *(
                store.create_run(r, q, reject_if_busy=True, owner="w", lease_seconds=9, claim=True)
                for r, q in runs
            )
        )
        assert [m.created for m in made] == [True] + [False] * 9
        assert {m.run.id for m in made} == {runs[0][0].id}
        assert len(await store.active_runs(s.id)) == 1
