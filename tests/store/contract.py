"""The contract every store backend must pass. A backend's test module subclasses
``StoreContract`` and provides a ``store`` fixture that yields an opened, empty store."""

from __future__ import annotations

import pytest

from culm.errors import Conflict, IdempotencyKeyReused, NotFound, OwnershipLost, SessionBusy
from culm.events import Event
from culm.ids import new_id
from culm.models import Message, Run, RunState, RunStatus, Session, Trigger
from culm.projection import advance
from culm.store import RunFilter, Store
from culm.store.base import Fence, Ownership


def session(tenant: str = "t1", parent: str | None = None, **metadata: str) -> Session:
    return Session(
        id=new_id("ses"), tenant=tenant, created_at=1.0, metadata=metadata, parent_id=parent
    )


def pending(session: Session, agent: str = "a", **fields: object) -> tuple[Run, Event]:
    run_id = new_id("run")
    queued = Event(1, run_id, session.id, "run.queued", {}, ts=2.0)
    run = Run(
        id=run_id,
        session_id=session.id,
        tenant=session.tenant,
        agent=agent,
        input={"x": 1},
        trigger=Trigger.HTTP,
        created_at=2.0,
        state=advance(RunState(), queued),
        **fields,
    )  # type: ignore[arg-type]
    return run, queued


async def add_run(
    store: Store, s: Session, *, lease_seconds: float = 100.0, **fields: object
) -> Run:
    run, queued = pending(s, **fields)
    await store.create_run(
        run, queued, reject_if_busy=False, owner="w1", lease_seconds=lease_seconds
    )
    return run


def follow_up(
    run: Run,
    state: RunState,
    type: str,
    data: dict[str, object] | None = None,
) -> tuple[Event, RunState]:
    event = Event(state.last_seq + 1, run.id, run.session_id, type, data or {}, ts=3.0)
    return event, advance(state, event)


class StoreContract:
    """Behaviour the engine relies on, whatever the database."""

    async def test_sessions_round_trip_and_stay_in_their_tenant(self, store: Store) -> None:
        s = session(topic="x")
        await store.create_session(s)
        assert await store.get_session(s.id) == s
        assert await store.get_session(s.id, "t1") == s
        with pytest.raises(NotFound):
            await store.get_session(s.id, "t2")
        with pytest.raises(NotFound):
            await store.get_session("ses_missing")

    async def test_sessions_list_newest_first_by_page_and_metadata(self, store: Store) -> None:
        made = [session(kind="a" if i % 2 else "b") for i in range(5)]
        for s in made:
            await store.create_session(s)
        await store.create_session(session(tenant="t2"))
        first = await store.list_sessions("t1", limit=2)
        rest = await store.list_sessions("t1", limit=10, before=first[-1].id)
        assert [s.id for s in first + rest] == [s.id for s in reversed(made)]
        only_a = await store.list_sessions("t1", metadata={"kind": "a"})
        assert [s.id for s in only_a] == [made[3].id, made[1].id]

    async def test_the_probe_writes_clears_the_problem_and_leaves_nothing(
        self, store: Store
    ) -> None:
        store.problem = "the database cannot be written: database or disk is full"
        await store.probe()
        assert store.problem is None
        assert await store.list_sessions("") == []
        assert await store.list_sessions("t1") == []

    async def test_child_session_needs_its_parent(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.create_session(session(parent="ses_missing"))

    async def test_create_run_reject_and_enqueue(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        first = await add_run(store, s)
        run, queued = pending(s)
        with pytest.raises(SessionBusy) as caught:
            await store.create_run(
                run, queued, reject_if_busy=True, owner="w1", lease_seconds=100.0
            )
        assert caught.value.active_run_id == first.id
        with pytest.raises(NotFound):
            await store.get_run(run.id)
        assert await store.read_events(run.id) == []
        created = await store.create_run(
            run, queued, reject_if_busy=False, owner="w1", lease_seconds=100.0
        )
        assert created.ahead == first.id
        assert [r.id for r in await store.active_runs(s.id)] == [first.id, run.id]

    async def test_create_run_in_unknown_or_foreign_session(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        run, queued = pending(s)
        run.tenant = "t2"
        with pytest.raises(NotFound):
            await store.create_run(run, queued, reject_if_busy=False, owner="w", lease_seconds=1)

    async def test_a_run_round_trips_with_its_state(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        run = await add_run(
            store, s, parent_run_id="run_p", schedule_id="sch_1", idempotency_key="k"
        )
        stored = await store.get_run(run.id)
        assert stored == run
        assert await store.find_run("t1", "k") == run
        assert await store.find_run("t2", "k") is None
        with pytest.raises(NotFound):
            await store.get_run(run.id, "t2")

    async def test_claim_once_and_one_running_run_per_session(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        a = await add_run(store, s)
        b = await add_run(store, s)
        assert await store.claim_run(a.id, "w1", 50.0) == 1
        assert await store.claim_run(a.id, "w2", 50.0) is None
        assert await store.claim_run(b.id, "w1", 50.0) is None
        assert (await store.get_run(a.id)).status is RunStatus.RUNNING

    async def test_write_batch_appends_in_log_order_with_states(self, store: Store) -> None:
        s1, s2 = session(), session()
        for s in (s1, s2):
            await store.create_session(s)
        r1, r2 = await add_run(store, s1), await add_run(store, s2)
        batch, states = [], {}
        state1, state2 = r1.state, r2.state
        for i in range(3):
            e1, state1 = follow_up(r1, state1, "x.tick", {"i": i})
            e2, state2 = follow_up(r2, state2, "round.started")
            batch += [e1, e2]
        states = {r1.id: state1, r2.id: state2}
        fences = {r1.id: Fence("w1", 0), r2.id: Fence("w1", 0)}
        assert await store.write_batch(batch, states, fences) == set()
        positions = [e.pos for e in batch]
        assert positions == sorted(positions) and len(set(positions)) == 6
        assert (await store.get_run(r2.id)).state == state2
        got = await store.read_events(r1.id)
        assert [(e.seq, e.type, e.data) for e in got] == [
            (1, "run.queued", {}),
            (2, "x.tick", {"i": 0}),
            (3, "x.tick", {"i": 1}),
            (4, "x.tick", {"i": 2}),
        ]
        assert [e.seq for e in await store.read_events(r1.id, after=2, limit=1)] == [3]
        both = await store.read_session_events([s1.id, s2.id])
        assert [e.pos for e in both] == sorted(e.pos for e in both)
        assert len(both) == 8
        tail = await store.read_session_events([s2.id], after=both[3].pos)
        assert all(e.session_id == s2.id and e.pos > both[3].pos for e in tail)

    async def test_a_large_batch_gets_the_positions_it_is_stored_at(self, store: Store) -> None:
        """Thousands of events of several runs in one batch (more than one statement holds)
        each learn the position the log gave them, in batch order."""
        s1, s2 = session(), session()
        for s in (s1, s2):
            await store.create_session(s)
        r1, r2 = await add_run(store, s1), await add_run(store, s2)
        batch, state1, state2 = [], r1.state, r2.state
        for i in range(1_300):
            e1, state1 = follow_up(r1, state1, "x.tick", {"i": i})
            e2, state2 = follow_up(r2, state2, "x.tock", {"i": i})
            batch += [e1, e2]
        fences = {r1.id: Fence("w1", 0), r2.id: Fence("w1", 0)}
        lost = await store.write_batch(batch, {r1.id: state1, r2.id: state2}, fences)
        assert lost == set()
        positions = [e.pos for e in batch]
        assert positions == list(range(positions[0], positions[0] + len(batch)))
        stored = await store.read_session_events([s1.id, s2.id], limit=10_000)
        written = {(e.run_id, e.seq): e.pos for e in batch}
        assert {(e.run_id, e.seq): e.pos for e in stored if e.seq > 1} == written
        assert (await store.get_run(r1.id)).state == state1

    async def test_end_run_only_in_the_given_states(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        run = await add_run(store, s)

        def cancelled(r: Run) -> Event:
            return Event(
                r.state.last_seq + 1, r.id, r.session_id, "run.cancelled", {"error": "no"}, ts=4.0
            )

        ended = await store.end_run(run.id, frozenset({RunStatus.RUNNING}), cancelled)
        assert ended is None
        ended = await store.end_run(run.id, frozenset({RunStatus.PENDING}), cancelled)
        assert ended is not None
        assert ended[0].status is RunStatus.CANCELLED and ended[1].seq == 2
        assert (await store.get_run(run.id)).state.error == "no"
        assert await store.end_run(run.id, frozenset({RunStatus.PENDING}), cancelled) is None

    async def test_list_runs_filters_and_pages(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        runs = [await add_run(store, s, agent=f"a{i % 2}") for i in range(5)]
        page = await store.list_runs(RunFilter(tenant="t1"), limit=3)
        more = await store.list_runs(RunFilter(tenant="t1"), before=page[-1].id)
        assert [r.id for r in page + more] == [r.id for r in reversed(runs)]
        assert [r.id for r in await store.list_runs(RunFilter(agent="a1"))] == [
            runs[3].id,
            runs[1].id,
        ]
        assert await store.list_runs(RunFilter(tenant="t2")) == []
        assert len(await store.list_runs(RunFilter(status=RunStatus.PENDING))) == 5

    async def test_leases_and_ownership(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        run = await add_run(store, s)
        assert await store.runs_owned_elsewhere("w1") == []
        [owned] = await store.runs_owned_elsewhere("w2")
        assert owned == Ownership(run.id, "w1", 0, expired=False)
        lapsed = await add_run(store, s, lease_seconds=-1.0)
        [_, stale] = await store.runs_owned_elsewhere("w2")
        assert stale == Ownership(lapsed.id, "w1", 0, expired=True)
        # renewing is judged by the database's clock, and names what was lost
        assert await store.renew_leases("w1", 200.0, {run.id: 0, lapsed.id: 0}) == set()
        assert all(not o.expired for o in await store.runs_owned_elsewhere("w2"))
        assert await store.renew_leases("w1", 200.0, {run.id: 5}) == {run.id}

    async def test_delete_session_takes_children_runs_events_messages(self, store: Store) -> None:
        parent = session()
        await store.create_session(parent)
        child = session(parent=parent.id)
        await store.create_session(child)
        run = await add_run(store, child)
        await store.append_messages([Message(child.id, "user", {"content": "hi"}, 1.0)])
        with pytest.raises(Conflict, match="active run"):
            await store.delete_session(parent.id)

        def done(r: Run) -> Event:
            return Event(r.state.last_seq + 1, r.id, r.session_id, "run.completed", {}, ts=5)

        await store.end_run(run.id, frozenset({RunStatus.PENDING}), done)
        with pytest.raises(NotFound):
            await store.delete_session(parent.id, "t2")
        await store.delete_session(parent.id)
        for sid in (parent.id, child.id):
            with pytest.raises(NotFound):
                await store.get_session(sid)
        with pytest.raises(NotFound):
            await store.get_run(run.id)
        assert await store.read_events(run.id) == []
        assert await store.read_messages(child.id) == []

    async def test_messages_in_order(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        batch = [
            Message(s.id, "user", {"content": "hi"}, 1.0, run_id="run_1"),
            Message(s.id, "assistant", {"content": "hello", "tool_calls": []}, 2.0),
        ]
        await store.append_messages(batch)
        got = await store.read_messages(s.id)
        assert [(m.role, m.data, m.run_id) for m in got] == [
            ("user", {"content": "hi"}, "run_1"),
            ("assistant", {"content": "hello", "tool_calls": []}, None),
        ]
        assert [m.id for m in await store.read_messages(s.id, after=got[0].id)] == [got[1].id]

    async def test_purge_events_of_runs_ended_before(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        old = await add_run(store, s)

        def done(r: Run) -> Event:
            return Event(r.state.last_seq + 1, r.id, r.session_id, "run.completed", {}, ts=10.0)

        await store.end_run(old.id, frozenset({RunStatus.PENDING}), done)
        live = await add_run(store, s)
        assert await store.purge_events(finished_before=5.0) == 0
        assert await store.purge_events(finished_before=11.0) == 2
        assert await store.read_events(old.id) == []
        assert (await store.get_run(old.id)).status is RunStatus.COMPLETED
        assert len(await store.read_events(live.id)) == 1

    async def test_create_with_claim_and_new_session(self, store: Store) -> None:
        s = session()
        run, queued = pending(s)
        created = await store.create_run(
            run,
            queued,
            reject_if_busy=True,
            owner="w1",
            lease_seconds=9.0,
            claim=True,
            new_session=s,
        )
        assert (created.created, created.ahead, created.run.epoch) == (True, None, 1)
        assert await store.get_session(s.id) == s
        assert (await store.get_run(run.id)).status is RunStatus.RUNNING
        second, queued2 = pending(s)
        created = await store.create_run(
            second, queued2, reject_if_busy=False, owner="w1", lease_seconds=9.0, claim=True
        )
        assert created.ahead == run.id
        assert (await store.get_run(second.id)).status is RunStatus.PENDING

    async def test_startable_runs_are_first_in_line_on_a_free_session(self, store: Store) -> None:
        busy, free, fresh = session(), session(), session()
        for s in (busy, free, fresh):
            await store.create_session(s)
        running = await add_run(store, busy)
        assert await store.claim_run(running.id, "w1", 9.0) == 1
        await add_run(store, busy)  # behind a running run
        first = await add_run(store, free)
        await add_run(store, free)  # behind a pending run
        only = await add_run(store, fresh)
        assert [r.id for r in await store.startable_runs()] == [first.id, only.id]

    async def test_trees_of_spawned_sessions_and_runs(self, store: Store) -> None:
        root_session = session()
        await store.create_session(root_session)
        root = await add_run(store, root_session)
        child_session = session(parent=root_session.id)
        await store.create_session(child_session)
        child = await add_run(store, child_session, parent_run_id=root.id)
        grand_session = session(parent=child_session.id)
        await store.create_session(grand_session)
        grand = await add_run(store, grand_session, parent_run_id=child.id)
        await store.create_session(session())  # unrelated
        assert await store.session_tree(root_session.id) == [
            root_session.id,
            child_session.id,
            grand_session.id,
        ]
        assert await store.session_tree(grand_session.id) == [grand_session.id]
        assert [r.id for r in await store.run_tree(root.id)] == [root.id, child.id, grand.id]
        assert [r.id for r in await store.run_tree(child.id, "t1")] == [child.id, grand.id]
        with pytest.raises(NotFound):
            await store.run_tree(root.id, "t2")
        # every event read back names its run's parent, which no event row stores
        events = await store.read_session_events(await store.session_tree(root_session.id))
        assert [(e.run_id, e.parent_run_id) for e in events] == [
            (root.id, None),
            (child.id, root.id),
            (grand.id, child.id),
        ]
        assert [e.parent_run_id for e in await store.read_events(grand.id)] == [child.id]

    async def test_children_usage_round_trips(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        run = await add_run(store, s)
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        event, state = follow_up(run, run.state, "child.completed", {"usage": usage})
        await store.write_batch([event], {run.id: state}, {run.id: Fence("w1", 0)})
        stored = await store.get_run(run.id)
        assert stored.state.children_usage == usage == stored.state.tree_usage


class FencingContract:
    """Writes for a run happen only under the claim that is current."""

    async def test_a_stale_fence_writes_nothing_and_is_reported(self, store: Store) -> None:
        s1, s2 = session(), session()
        for s in (s1, s2):
            await store.create_session(s)
        mine, theirs = await add_run(store, s1), await add_run(store, s2)
        assert await store.claim_run(mine.id, "w1", 30.0) == 1
        assert await store.claim_run(theirs.id, "w2", 30.0) == 1
        e1, st1 = follow_up(mine, mine.state, "x.tick")
        e2, st2 = follow_up(theirs, theirs.state, "x.tick")
        lost = await store.write_batch(
            [e1, e2],
            {mine.id: st1, theirs.id: st2},
            {mine.id: Fence("w1", 1), theirs.id: Fence("w1", 1)},  # not its owner
        )
        assert lost == {theirs.id}
        assert [e.type for e in await store.read_events(mine.id)] == ["run.queued", "x.tick"]
        assert [e.type for e in await store.read_events(theirs.id)] == ["run.queued"]

    async def test_an_outside_end_bumps_the_epoch_and_fences_the_old_owner(
        self, store: Store
    ) -> None:
        s = session()
        await store.create_session(s)
        run = await add_run(store, s)
        epoch = await store.claim_run(run.id, "w1", 30.0)
        assert epoch == 1

        def interrupted(r: Run) -> Event:
            return Event(r.state.last_seq + 1, r.id, r.session_id, "run.interrupted", {}, ts=4.0)

        running = frozenset({RunStatus.RUNNING})
        assert await store.end_run(run.id, running, interrupted, fence=Fence("w1", 0)) is None
        ended = await store.end_run(run.id, running, interrupted, fence=Fence("w1", 1))
        assert ended is not None and ended[0].epoch == 2
        late, state = follow_up(run, run.state, "run.completed")
        lost = await store.write_batch([late], {run.id: state}, {run.id: Fence("w1", 1)})
        assert lost == {run.id}
        assert [e.type for e in await store.read_events(run.id)] == [
            "run.queued",
            "run.interrupted",
        ]
        assert await store.renew_leases("w1", 30.0, {run.id: 1}) == {run.id}
        with pytest.raises(OwnershipLost):
            await store.append_messages(
                [Message(s.id, "user", {"content": "hi"}, 1.0, run_id=run.id)], Fence("w1", 1)
            )

    async def test_an_idempotency_key_names_one_run(self, store: Store) -> None:
        s = session()
        await store.create_session(s)
        first, queued = pending(s, idempotency_key="k1")
        made = await store.create_run(
            first, queued, reject_if_busy=True, owner="w1", lease_seconds=9.0
        )
        assert made.created
        again, queued2 = pending(s, idempotency_key="k1")
        replayed = await store.create_run(
            again, queued2, reject_if_busy=True, owner="w1", lease_seconds=9.0
        )
        assert (replayed.created, replayed.run.id) == (False, first.id)
        other, queued3 = pending(s, agent="b", idempotency_key="k1")
        with pytest.raises(IdempotencyKeyReused):
            await store.create_run(
                other, queued3, reject_if_busy=False, owner="w1", lease_seconds=9
            )
