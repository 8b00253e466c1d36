"""The outbox with an engine on a real SQLite file: every matching event once per endpoint,
also with two dispatchers (as two processes would run) filling and sending from one log."""

from __future__ import annotations

import culm
from culm.store import open_store
from culm.store.webhooks import DeliveryStatus
from culm.webhooks import Webhooks
from tests.api.helpers import eventually
from tests.conftest import EngineFactory
from tests.webhooks.receiver import HANG, Receiver

FAST = {"webhook_allow_private": True, "webhook_poll_seconds": 0.05, "webhook_retry_base": 0.05}


async def test_two_dispatchers_deliver_each_event_once(
    make_engine: EngineFactory, receiver: Receiver
) -> None:
    """Both fill from one cursor (a compare-and-set decides who writes a stretch) and both
    send (a claim decides who attempts a delivery): 201 events, 201 posts, 201 ids."""
    async with make_engine(**FAST) as engine, Webhooks(engine.store, engine.settings) as first:
        other = open_store(engine.settings)
        await other.open()
        try:
            async with Webhooks(other, engine.settings) as second:
                assert first.dispatcher is not None and second.dispatcher is not None
                created = await first.create("default", receiver.url("both"), ["test.*", "run.*"])
                receiver.expect("both", created.secret)
                run = await engine.start_run("count", 199)
                await engine.wait(run.id, timeout=30)
                # run.queued, run.started, 199 ticks, run.completed
                posts = await receiver.wait_for("both", 202, timeout=30)
                ledger = await second.deliveries(created.endpoint.id, "default", limit=1000)
        finally:
            await other.close()
    assert all(p.verified for p in posts)
    assert len({p.id for p in posts}) == 202
    assert sorted(p.json()["seq"] for p in posts) == list(range(1, 203))
    assert len(ledger) == 202
    assert {(d.status, d.attempts) for d in ledger} <= {
        (DeliveryStatus.DELIVERED, 1),
        (DeliveryStatus.PENDING, 0),  # claimed, its outcome not yet written
    }
    assert len(receiver.received) == 202


async def test_events_before_an_endpoint_existed_are_not_delivered(
    make_engine: EngineFactory, receiver: Receiver
) -> None:
    async with (
        make_engine(**FAST) as engine,
        Webhooks(engine.webhook_store(), engine.settings) as hooks,
    ):
        before = await engine.start_run("echo", "before")
        await engine.wait(before.id)
        created = await hooks.create("default", receiver.url("new"), ["run.completed"])
        after = await engine.start_run("echo", "after")
        await engine.wait(after.id)
        [post] = await receiver.wait_for("new", 1)
        assert post.json()["run_id"] == after.id
        assert [d.run_id for d in await hooks.deliveries(created.endpoint.id, "default")] == [
            after.id
        ]


async def test_events_while_an_endpoint_is_disabled_are_not_queued_for_it(
    make_engine: EngineFactory, receiver: Receiver
) -> None:
    async with make_engine(**FAST) as engine, Webhooks(engine.store, engine.settings) as hooks:
        created = await hooks.create("default", receiver.url("off"), ["run.completed"])
        endpoint = await hooks.disable(created.endpoint.id, "default", "maintenance")
        assert endpoint.disabled_reason == "maintenance" and not endpoint.enabled
        quiet = await engine.start_run("echo", "quiet")
        await engine.wait(quiet.id)
        await hooks.enable(created.endpoint.id, "default")
        loud = await engine.start_run("echo", "loud")
        await engine.wait(loud.id)
        [post] = await receiver.wait_for("off", 1)
        assert post.json()["run_id"] == loud.id


async def test_the_ledger_forgets_finished_deliveries_after_its_time(
    make_engine: EngineFactory, receiver: Receiver
) -> None:
    async with make_engine(**FAST) as engine, Webhooks(engine.store, engine.settings) as hooks:
        created = await hooks.create("default", receiver.url("old"), ["run.completed"])
        run = await engine.start_run("echo", "x")
        await engine.wait(run.id)
        await receiver.wait_for("old", 1)
        store = hooks.store

        async def delivered() -> bool:
            found = await store.list_deliveries(created.endpoint.id)
            return [d.status for d in found] == [DeliveryStatus.DELIVERED]

        await eventually(delivered)
        [delivery] = await store.list_deliveries(created.endpoint.id)
        assert await store.purge(before=delivery.created_at) == 0
        assert await store.purge(before=delivery.created_at + 1) == 1
        assert await store.list_deliveries(created.endpoint.id) == []
        assert await store.attempts(delivery.id) == []


async def test_a_run_never_waits_for_its_deliveries(
    make_engine: EngineFactory, receiver: Receiver
) -> None:
    """Every attempt hangs (the receiver never answers): the run still emits its 500 events
    and ends, durably, while the first attempts are held open."""
    receiver.script("stuck", then=HANG)
    settings = {**FAST, "webhook_timeout": 60.0}
    async with make_engine(**settings) as engine, Webhooks(engine.store, engine.settings) as hooks:
        created = await hooks.create("default", receiver.url("stuck"), ["test.*", "run.*"])
        run = await engine.start_run("count", 500)
        first = await engine.wait(run.id, timeout=10)
        assert first.status is culm.RunStatus.COMPLETED
        held = await receiver.wait_for("stuck", 4)  # webhook_endpoint_concurrency
        assert all(p.answer is HANG for p in held)

        async def all_queued() -> bool:
            pending = await hooks.deliveries(
                created.endpoint.id, "default", status=DeliveryStatus.PENDING, limit=1000
            )
            return len(pending) == 503  # run.queued, run.started, 500 ticks, run.completed

        await eventually(all_queued)
        assert len(receiver.received) == 4
