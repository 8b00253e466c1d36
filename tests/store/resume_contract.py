"""Taking over the runs of a dead process (``resume_runs``) and handing runs back at
shutdown (``release_runs``), on every backend: a backend's test module mixes
``ResumeContract`` in and provides ``store`` and ``other_store`` (a second store on the
same database, as another process would open)."""

from __future__ import annotations

import asyncio

from culm.events import Event
from culm.models import Run, RunStatus
from culm.store import Store
from culm.store.base import CancelRequest, Fence, Ownership
from tests.store.contract import add_run, follow_up, session


def resumed(run: Run) -> Event:
    data = {"attempt": run.attempt + 1}
    return Event(run.state.last_seq + 1, run.id, run.session_id, "run.resumed", data, ts=5.0)


def cancelled(run: Run, asked: CancelRequest) -> Event:
    data = {"by": asked.by, "reason": asked.reason}
    return Event(run.state.last_seq + 1, run.id, run.session_id, "run.cancelled", data, ts=5.0)


async def running(store: Store, owner: str = "w1") -> Run:
    """A run claimed by ``owner`` at epoch 1."""
    s = session()
    await store.create_session(s)
    run = await add_run(store, s)
    assert await store.claim_run(run.id, owner, 30.0) == 1
    return await store.get_run(run.id)


class ResumeContract:
    """A run is taken over once, by one process, and only under the claim it was seen
    under."""

    async def test_a_run_is_resumed_only_under_its_owners_fence(self, store: Store) -> None:
        run = await running(store)
        for fence in (Fence("w1", 0), Fence("w9", 1), None):  # stale, another's, nobody's
            assert await store.resume_runs([(run.id, fence)], "w2", 30.0, resumed, cancelled) == []
        assert [e.type for e in await store.read_events(run.id)] == ["run.queued"]
        [taken] = await store.resume_runs(
            [(run.id, Fence("w1", 1))], "w2", 30.0, resumed, cancelled
        )
        assert (taken.status, taken.epoch, taken.attempt) == (RunStatus.RUNNING, 2, 1)
        stored = await store.get_run(run.id)
        assert (stored.epoch, stored.attempt, stored.state.last_seq) == (2, 1, 2)
        assert await store.ownership(run.id) == Ownership(run.id, "w2", 2, expired=False)
        events = await store.read_events(run.id)
        assert [(e.seq, e.type, e.data) for e in events][1:] == [(2, "run.resumed", {"attempt": 1})]
        # the dead owner's fence holds no more: its late writes are refused
        late, state = follow_up(stored, run.state, "x.tick")
        assert await store.write_batch([late], {run.id: state}, {run.id: Fence("w1", 1)}) == {
            run.id
        }
        assert (
            await store.resume_runs([(run.id, Fence("w1", 1))], "w3", 30.0, resumed, cancelled)
            == []
        )

    async def test_of_two_processes_resuming_at_once_one_wins(
        self, store: Store, other_store: Store
    ) -> None:
        crashed = await running(store)
        handed = await running(store)
        await store.release_runs("w1", {handed.id: 1})
        for run_id, fence in ((crashed.id, Fence("w1", 1)), (handed.id, None)):
            won = await asyncio.gather(
                store.resume_runs([(run_id, fence)], "w2", 30.0, resumed, cancelled),
                other_store.resume_runs([(run_id, fence)], "w3", 30.0, resumed, cancelled),
            )
            assert sorted(len(taken) for taken in won) == [0, 1], run_id
            winner = "w2" if won[0] else "w3"
            stored = await store.get_run(run_id)
            assert (stored.epoch, stored.attempt) == (2, 1)
            assert await store.ownership(run_id) == Ownership(run_id, winner, 2, expired=False)
            kinds = [e.type for e in await store.read_events(run_id)]
            assert kinds == ["run.queued", "run.resumed"]

    async def test_a_run_with_a_cancel_request_ends_cancelled(self, store: Store) -> None:
        run = await running(store)
        assert await store.request_cancel(run.id, "alice", "no more")
        [ended] = await store.resume_runs(
            [(run.id, Fence("w1", 1))], "w2", 30.0, resumed, cancelled
        )
        assert (ended.status, ended.epoch, ended.attempt) == (RunStatus.CANCELLED, 2, 0)
        stored = await store.get_run(run.id)
        assert (stored.status, stored.epoch, stored.attempt) == (RunStatus.CANCELLED, 2, 0)
        assert await store.ownership(run.id) is None  # ended: held by nobody
        events = await store.read_events(run.id)
        assert [(e.type, e.data) for e in events] == [
            ("run.queued", {}),
            ("run.cancelled", {"by": "alice", "reason": "no more"}),
        ]

    async def test_a_hand_back_leaves_the_run_to_nobody(self, store: Store) -> None:
        run, other = await running(store), await running(store)
        await store.release_runs("w1", {run.id: 1, other.id: 0})  # the second: a stale epoch
        assert await store.ownership(run.id) == Ownership(run.id, None, 1, expired=True)
        assert await store.ownership(other.id) == Ownership(other.id, "w1", 1, expired=False)
        assert (await store.get_run(run.id)).status is RunStatus.RUNNING
        # a handed-back run is found by whoever looks for runs to take over
        found = {o.run_id for o in await store.runs_owned_elsewhere("w2")}
        assert found == {run.id, other.id}
        assert {o.run_id for o in await store.runs_owned_elsewhere("w1")} == {run.id}
