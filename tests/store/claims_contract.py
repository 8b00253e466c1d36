"""Claims of queued runs and cancel requests: part of the contract every store passes."""

from __future__ import annotations

import asyncio

from culm.models import RunStatus
from culm.store import Store
from tests.store.contract import add_run, session


class ClaimContract:
    async def test_claims_take_the_oldest_runs_first_in_line_of_known_agents(
        self, store: Store
    ) -> None:
        s1, s2, s3 = session(), session(), session()
        for s in (s1, s2, s3):
            await store.create_session(s)
        first = await add_run(store, s1)
        await add_run(store, s1)  # second in line on s1: waits for the first
        foreign = await add_run(store, s2, agent="unknown")
        third = await add_run(store, s3)
        claimed = await store.claim_pending("w2", {"a"}, 10, 30.0)
        assert [r.id for r in claimed] == [first.id, third.id]
        assert all(r.status is RunStatus.RUNNING and r.epoch == 1 for r in claimed)
        assert (await store.get_run(foreign.id)).status is RunStatus.PENDING
        assert await store.claim_pending("w2", {"a"}, 10, 30.0) == []  # s1 is busy now

    async def test_claims_stop_at_the_limit_asked(self, store: Store) -> None:
        made = []
        for _ in range(5):
            s = session()
            await store.create_session(s)
            made.append(await add_run(store, s))
        claimed = await store.claim_pending("w2", {"a"}, 2, 30.0)
        assert [r.id for r in claimed] == [r.id for r in made[:2]]

    async def test_concurrent_claimers_never_take_one_run_twice(self, store: Store) -> None:
        for _ in range(30):
            s = session()
            await store.create_session(s)
            await add_run(store, s)
        batches = await asyncio.gather(
            *(store.claim_pending(f"w{i}", {"a"}, 4, 30.0) for i in range(10))
        )
        ids = [r.id for batch in batches for r in batch]
        assert len(ids) == len(set(ids))
        assert len(ids) <= 30

    async def test_a_tenant_at_its_limit_waits_and_others_go_first(self, store: Store) -> None:
        busy = []
        for _ in range(6):
            s = session(tenant="burst")
            await store.create_session(s)
            busy.append(await add_run(store, s))
        calm = session(tenant="calm")
        await store.create_session(calm)
        late = await add_run(store, calm)
        claimed = await store.claim_pending("w2", {"a"}, 10, 30.0, tenant_limit=2)
        assert [r.id for r in claimed] == [busy[0].id, busy[1].id, late.id]
        assert await store.claim_pending("w2", {"a"}, 10, 30.0, tenant_limit=2) == []
        # one of the tenant's runs ends: its next run, in order, takes the place
        await store.end_run(busy[0].id, frozenset({RunStatus.RUNNING}), _completed)
        again = await store.claim_pending("w2", {"a"}, 10, 30.0, tenant_limit=2)
        assert [r.id for r in again] == [busy[2].id]

    async def test_a_cancel_request_is_stored_once_on_an_active_run(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        run = await add_run(store, s)
        assert await store.cancel_requests([run.id]) == {}
        assert await store.request_cancel(run.id, "alice", "enough")
        assert not await store.request_cancel(run.id, "bob", None)
        [(run_id, request)] = (await store.cancel_requests([run.id])).items()
        assert (run_id, request.by, request.reason) == (run.id, "alice", "enough")
        await store.end_run(run.id, frozenset({RunStatus.PENDING}), _completed)
        assert await store.cancel_requests([run.id]) == {}
        assert not await store.request_cancel(run.id, "bob", None)


def _completed(run):  # type: ignore[no-untyped-def]
    from culm.events import Event

    seq = run.state.last_seq + 1
    return Event(seq, run.id, run.session_id, "run.completed", {"output": None}, ts=5.0)
