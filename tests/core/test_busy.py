"""One active run per session; the caller's policy decides what happens when busy."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import culm
from tests.waiting import until_running


class TestBusySession:
    async def test_reject_names_the_active_run(self, engine: culm.Engine) -> None:
        first = await engine.start_run("waiter")
        with pytest.raises(culm.SessionBusy) as caught:
            await engine.start_run("echo", "x", session_id=first.session_id)
        assert caught.value.active_run_id == first.id
        assert first.id in str(caught.value)
        runs = await engine.list_runs(culm.RunFilter(session_id=first.session_id))
        assert [r.id for r in runs] == [first.id]  # nothing half-created
        await engine.cancel(first.id)

    async def test_enqueue_runs_in_order_after_the_active_one(self, engine: culm.Engine) -> None:
        first = await engine.start_run("ticker", {"n": 3, "delay": 0.01})
        queued = [
            await engine.start_run(
                "echo", f"#{i}", session_id=first.session_id, if_busy=culm.BusyPolicy.ENQUEUE
            )
            for i in range(5)
        ]
        assert all(r.status is culm.RunStatus.PENDING for r in queued)
        done = [await engine.wait(r.id, timeout=10) for r in queued]
        assert [r.state.output for r in done] == [f"#{i}" for i in range(5)]
        first_done = await engine.get_run(first.id)
        starts = [first_done.state.started_at, *(r.state.started_at for r in done)]
        ends = [first_done.state.completed_at, *(r.state.completed_at for r in done)]
        assert starts == sorted(starts)  # type: ignore[type-var]
        for ended, started in zip(ends, starts[1:], strict=False):
            assert ended is not None and started is not None and ended <= started

    async def test_interrupt_cancels_the_active_run_then_starts(self, engine: culm.Engine) -> None:
        first = await engine.start_run("waiter")
        await until_running(engine, first.id)
        second = await engine.start_run(
            "echo",
            "now",
            session_id=first.session_id,
            if_busy=culm.BusyPolicy.INTERRUPT,
            by="ann",
        )
        done = await engine.wait(second.id, timeout=10)
        assert done.status is culm.RunStatus.COMPLETED
        cancelled = await engine.get_run(first.id)
        assert cancelled.status is culm.RunStatus.CANCELLED
        last = (await engine.events(first.id))[-1]
        assert last.data["by"] == "ann"
        assert last.data["reason"] == f"interrupted by run {second.id}"
        assert cancelled.state.completed_at is not None and done.state.started_at is not None
        assert cancelled.state.completed_at <= done.state.started_at

    async def test_a_finished_session_takes_a_new_run(self, engine: culm.Engine) -> None:
        first = await engine.start_run("echo", "a")
        await engine.wait(first.id, timeout=10)
        second = await engine.start_run("echo", "b", session_id=first.session_id)
        assert (await engine.wait(second.id, timeout=10)).state.output == "b"


class TestStartRun:
    async def test_bad_input_is_refused_and_nothing_is_stored(self, engine: culm.Engine) -> None:
        with pytest.raises(culm.InvalidInput, match="invalid input for agent 'count'"):
            await engine.start_run("count", "many")
        with pytest.raises(culm.NotFound, match="no agent named 'nope'"):
            await engine.start_run("nope")
        with pytest.raises(culm.NotFound, match="no session"):
            await engine.start_run("echo", "x", session_id="ses_missing")
        assert await engine.list_runs() == []
        assert await engine.list_sessions() == []

    async def test_idempotency_key_returns_the_same_run(self, engine: culm.Engine) -> None:
        a = await engine.start_run("echo", "x", idempotency_key="k1")
        b = await engine.start_run("echo", "x", idempotency_key="k1")
        assert a.id == b.id
        assert len(await engine.list_runs()) == 1

    async def test_generator_agents_emit_what_they_yield(self, engine: culm.Engine) -> None:
        run = await engine.start_run("steps", 2)
        await engine.wait(run.id, timeout=10)
        events = await engine.events(run.id)
        assert [(e.type, e.data) for e in events[2:4]] == [
            ("test.step", {"i": 0}),
            ("test.step", {"i": 1}),
        ]


class Order(BaseModel):
    item: str
    count: int = 1


class TestInput:
    """What an agent receives as input, and what is stored."""

    async def test_no_input_means_the_agents_default(self, engine: culm.Engine) -> None:
        app = culm.App()

        @app.agent
        async def greet(run: culm.RunContext, input: str = "world") -> str:
            return f"hello {input}"

        engine.app = app
        run = await engine.start_run("greet")
        assert run.input == "world"
        assert (await engine.wait(run.id, timeout=10)).state.output == "hello world"

    async def test_a_pydantic_input_is_stored_as_json_and_given_typed(
        self, engine: culm.Engine
    ) -> None:
        app = culm.App()
        received: list[object] = []

        @app.agent
        async def shop(run: culm.RunContext, input: Order) -> int:
            received.append(input)
            return input.count

        engine.app = app
        run = await engine.start_run("shop", {"item": "tea", "count": "3"})
        assert run.input == {"item": "tea", "count": 3}
        done = await engine.wait(run.id, timeout=10)
        assert done.state.output == 3
        assert received == [Order(item="tea", count=3)]
        with pytest.raises(culm.InvalidInput, match="item"):
            await engine.start_run("shop", {"count": 1})
