"""Runs that wait for a person, in process (on SQLite and on PostgreSQL): what the store
and the executor do around a wait, its races and its crash points."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import culm
from culm.llm.scripted import Reply, ScriptedModel, call
from tests.conftest import EngineFactory
from tests.resume.crash import crash, until
from tests.waiting import until_event

SENT: list[str] = []


def people_app(model: ScriptedModel) -> culm.App:
    app = culm.App()

    @app.tool(approval=True)
    def send(to: str) -> str:
        """Sends."""
        SENT.append(to)
        return f"sent to {to}"

    app.add_agent("mailer", model=model, tools=[send, "ask_user"])

    @app.agent(resume=True)
    async def asker(run: culm.RunContext, input: str) -> Any:
        first = await run.ask("First?")
        second = await run.ask("Second?", int, default=0)
        return [first, second]

    @app.agent(resume=True, input_timeout=0.2, on_input_timeout="continue")
    async def patient(run: culm.RunContext, input: str) -> Any:
        return await run.ask("Number?", int, default=7)

    return app


def mailer_script() -> ScriptedModel:
    return ScriptedModel(Reply("Sending.", [call("send", to="ann")]), "Sent.")


async def waiting_on(engine: culm.Engine, run_id: str) -> str:
    event = await until_event(engine, run_id, "run.waiting")
    await until(lambda: _status(engine, run_id, "waiting"))
    return str(event.data["call_id"])


async def _status(engine: culm.Engine, run_id: str, status: str) -> bool:
    return (await engine.get_run(run_id)).status.value == status


@pytest.fixture(autouse=True)
def forget_sent() -> None:
    SENT.clear()


async def test_a_waiting_run_holds_no_process(make_engine: EngineFactory) -> None:
    async with make_engine(people_app(mailer_script())) as engine:
        run = await engine.start_run("mailer", "mail ann")
        await waiting_on(engine, run.id)
        # handed back (the row says nobody holds it), then forgotten here
        await until(lambda: _unheld(engine, run.id))
        await until(lambda: _forgotten(engine, run.id))
        assert engine.executor.active == 0
        done = await engine.answer(
            run.id, (await engine.get_run(run.id)).state.waiting["call_id"], approve=True
        )  # type: ignore[index]
        assert done.status is culm.RunStatus.PENDING
        ended = await engine.wait(run.id, timeout=10)
    assert ended.status is culm.RunStatus.COMPLETED and SENT == ["ann"]
    assert ended.attempt == 0  # taken up again, not resumed after a crash


async def _forgotten(engine: culm.Engine, run_id: str) -> bool:
    return engine.executor.runner(run_id) is None


async def _unheld(engine: culm.Engine, run_id: str) -> bool:
    owner = await engine.store.ownership(run_id)
    return owner is not None and owner.worker_id is None


def hold_hand_back(engine: culm.Engine) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the engine's hand-back of a waiting run wait: the first event is set when it
    begins, and it goes on once the second is set."""
    store = engine.store
    parking, release = asyncio.Event(), asyncio.Event()
    original = store.park_run

    async def slow_park(run_id: str, fence: Any) -> bool:
        parking.set()
        await release.wait()
        return await original(run_id, fence)

    store.park_run = slow_park  # type: ignore[method-assign]
    return parking, release


async def test_an_answer_during_the_hand_back_is_not_lost(make_engine: EngineFactory) -> None:
    app = people_app(mailer_script())
    # no periodic sweep to start what was left pending: only the hand-back's own take-up
    async with make_engine(app, idle_poll_seconds=60) as engine:
        parking, release = hold_hand_back(engine)
        run = await engine.start_run("mailer", "mail ann")
        await asyncio.wait_for(parking.wait(), 10)
        call_id = (await engine.get_run(run.id)).state.waiting["call_id"]  # type: ignore[index]
        await engine.answer(run.id, call_id, approve=True)  # the runner is still here
        await asyncio.sleep(0.1)  # the answer's own take-up finds it here, and leaves it
        release.set()
        ended = await engine.wait(run.id, timeout=10)
    assert ended.status is culm.RunStatus.COMPLETED and SENT == ["ann"]


async def test_a_cancel_during_the_hand_back_ends_the_run(make_engine: EngineFactory) -> None:
    async with make_engine(people_app(mailer_script())) as engine:
        parking, release = hold_hand_back(engine)
        run = await engine.start_run("mailer", "mail ann")
        await asyncio.wait_for(parking.wait(), 10)
        cancelling = asyncio.ensure_future(engine.cancel(run.id, reason="no mail"))
        await asyncio.sleep(0.05)
        release.set()
        await cancelling
        ended = await engine.wait(run.id, timeout=10)
    assert ended.status is culm.RunStatus.CANCELLED and SENT == []


async def test_a_death_before_the_hand_back(make_engine: EngineFactory) -> None:
    first = await _crashed_while_waiting(make_engine)
    # the answer the first process recorded is not asked for again: only the next round's
    async with make_engine(people_app(ScriptedModel("Sent."))) as engine:
        # the new process finishes the hand-back; nothing is resumed or interrupted
        await until(lambda: _unheld(engine, first))
        run = await engine.get_run(first)
        assert run.status is culm.RunStatus.WAITING and run.attempt == 0
        await engine.answer(first, run.state.waiting["call_id"], approve=True)  # type: ignore[index]
        ended = await engine.wait(first, timeout=10)
    assert ended.status is culm.RunStatus.COMPLETED and SENT == ["ann"]
    events = await engine_events(make_engine, first)
    kinds = [e.type for e in events]
    assert kinds.count("run.waiting") == 1
    # not resumed after the crash (it waited): only taken up again once answered
    resumed = [e.data for e in events if e.type == "run.resumed"]
    assert resumed == [
        {"attempt": 0, "after_seq": kinds.index("input.received") + 1, "cause": "input"}
    ]
    assert kinds[kinds.index("input.received") + 1] == "run.resumed"


async def _crashed_while_waiting(make_engine: EngineFactory) -> str:
    async with make_engine(people_app(mailer_script())) as engine:
        blocked = asyncio.Event()

        async def never(run_id: str, fence: Any) -> bool:
            blocked.set()
            await asyncio.Event().wait()
            return False

        engine.store.park_run = never  # type: ignore[method-assign]
        run = await engine.start_run("mailer", "mail ann")
        await asyncio.wait_for(blocked.wait(), 10)
        await crash(engine)
    return run.id


async def engine_events(make_engine: EngineFactory, run_id: str) -> list[culm.Event]:
    async with make_engine(people_app(mailer_script())) as engine:
        return await engine.events(run_id, limit=1000)


async def test_answers_in_order_and_typed(make_engine: EngineFactory) -> None:
    async with make_engine(people_app(mailer_script())) as engine:
        run = await engine.start_run("asker", "?")
        assert await waiting_on(engine, run.id) == "ask-1"
        with pytest.raises(culm.NotWaiting):
            await engine.answer(run.id, "ask-2", answer=1)
        await engine.answer(run.id, "ask-1", answer={"free": "form"})
        await until(lambda: _asks(engine, run.id, "ask-2"))
        with pytest.raises(culm.InvalidInput, match="does not fit"):
            await engine.answer(run.id, "ask-2", answer="three")
        await engine.answer(run.id, "ask-2", answer=3)
        ended = await engine.wait(run.id, timeout=10)
    assert ended.state.output == [{"free": "form"}, 3]


async def _asks(engine: culm.Engine, run_id: str, call_id: str) -> bool:
    run = await engine.get_run(run_id)
    return run.state.waiting is not None and run.state.waiting["call_id"] == call_id


async def test_a_timed_out_question_goes_on_with_its_default(
    make_engine: EngineFactory,
) -> None:
    async with make_engine(people_app(mailer_script()), input_poll_seconds=0.1) as engine:
        run = await engine.start_run("patient", "?")
        ended = await engine.wait(run.id, timeout=10)
        received = [e for e in await engine.events(run.id) if e.type == "input.received"]
    assert ended.state.output == 7
    assert received[0].data["timed_out"] is True and received[0].data["by"] == "timeout"


async def test_in_a_worker_that_claims(make_engine: EngineFactory) -> None:
    # a process that takes runs only by claiming them (concurrency set) takes up an answered
    # run by a claim, and goes on from its log
    async with make_engine(people_app(mailer_script()), concurrency=4) as engine:
        run = await engine.start_run("mailer", "mail ann")
        call_id = await waiting_on(engine, run.id)
        await engine.answer(run.id, call_id, approve=True)
        ended = await engine.wait(run.id, timeout=10)
    assert ended.status is culm.RunStatus.COMPLETED and SENT == ["ann"]


async def test_steering_a_pending_run_is_taken_at_its_first_round(
    make_engine: EngineFactory,
) -> None:
    model = ScriptedModel("Noted.")
    app = people_app(model)
    async with make_engine(app) as engine:
        session = await engine.create_session()
        blocker = await engine.start_run("asker", "?", session_id=session.id)
        await waiting_on(engine, blocker.id)
        queued = await engine.start_run(
            "mailer", "hello", session_id=session.id, if_busy=culm.BusyPolicy.ENQUEUE
        )
        await engine.send_message(queued.id, "and goodbye")
        await engine.cancel(blocker.id)
        ended = await engine.wait(queued.id, timeout=10)
    assert ended.status is culm.RunStatus.COMPLETED
    sent = model.requests[0].messages
    assert sent[-2:] == [
        {"role": "user", "content": "hello"},
        {"role": "user", "content": "and goodbye"},
    ]


async def test_unread_messages_are_bounded_in_bytes(make_engine: EngineFactory) -> None:
    model = ScriptedModel("Noted.")
    async with make_engine(people_app(model), max_event_bytes=4096) as engine:
        session = await engine.create_session()
        blocker = await engine.start_run("asker", "?", session_id=session.id)
        await waiting_on(engine, blocker.id)
        queued = await engine.start_run(
            "mailer", "hi", session_id=session.id, if_busy=culm.BusyPolicy.ENQUEUE
        )
        await engine.send_message(queued.id, "é" * 1500)  # 3,000 bytes
        with pytest.raises(culm.Conflict, match="not taken in yet"):
            await engine.send_message(queued.id, "é" * 600)  # 1,200 more: past 4,096
        await engine.send_message(queued.id, "e" * 1000)
        await engine.cancel(blocker.id)
        assert (await engine.wait(queued.id, timeout=10)).status is culm.RunStatus.COMPLETED
        # an ended run takes no message
        with pytest.raises(culm.Conflict, match="has ended"):
            await engine.send_message(queued.id, "late")
    assert [m["content"][:1] for m in model.requests[0].messages[-2:]] == ["é", "e"]
