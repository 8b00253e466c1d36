"""Cancellation: cooperative at safe points, outright after the grace period, idempotent."""

from __future__ import annotations

import asyncio

import pytest

import culm
from tests.conftest import EngineFactory
from tests.waiting import until_running


async def types_of(engine: culm.Engine, run_id: str) -> list[str]:
    return [e.type for e in await engine.events(run_id)]


class TestCancel:
    """A user who cancels a run gets it stopped, and the stream says who and why."""

    async def test_cooperative_at_a_safe_point(self, engine: culm.Engine) -> None:
        run = await engine.start_run("waiter")
        await until_running(engine, run.id)
        await engine.cancel(run.id, by="ann", reason="wrong input")
        done = await engine.wait(run.id, timeout=10)
        assert done.status is culm.RunStatus.CANCELLED
        assert done.state.error == "cancelled by ann: wrong input"
        events = await engine.events(run.id)
        assert [e.type for e in events] == ["run.queued", "run.started", "run.cancelled"]
        assert events[-1].data == {
            "by": "ann",
            "reason": "wrong input",
            "forced": False,
            "error": "cancelled by ann: wrong input",
        }

    async def test_between_emits_of_a_busy_agent(self, engine: culm.Engine) -> None:
        run = await engine.start_run("ticker", {"n": 10_000, "delay": 0})
        await until_running(engine, run.id)
        await engine.cancel(run.id)
        done = await engine.wait(run.id, timeout=10)
        assert done.status is culm.RunStatus.CANCELLED
        assert done.state.last_seq < 10_003

    async def test_outright_after_grace_when_ignored(self, make_engine: EngineFactory) -> None:
        async with make_engine(cancel_grace=0.2) as engine:
            run = await engine.start_run("stubborn")
            await until_running(engine, run.id)
            await engine.cancel(run.id, reason="stop")
            done = await engine.wait(run.id, timeout=10)
            assert done.status is culm.RunStatus.CANCELLED
            last = (await engine.events(run.id))[-1]
            assert last.type == "run.cancelled"
            assert last.data["forced"] is True

    async def test_even_an_agent_that_swallows_the_hard_cancel_ends_cancelled(
        self, make_engine: EngineFactory
    ) -> None:
        async with make_engine(cancel_grace=0.1) as engine:
            run = await engine.start_run("deaf")
            await until_running(engine, run.id)
            await engine.cancel(run.id)
            done = await engine.wait(run.id, timeout=10)
            assert done.status is culm.RunStatus.CANCELLED
            assert (await types_of(engine, run.id)).count("run.cancelled") == 1

    async def test_a_queued_run_ends_at_once(self, engine: culm.Engine) -> None:
        first = await engine.start_run("waiter")
        queued = await engine.start_run(
            "echo", "later", session_id=first.session_id, if_busy=culm.BusyPolicy.ENQUEUE
        )
        cancelled = await engine.cancel(queued.id, reason="not needed")
        assert cancelled.status is culm.RunStatus.CANCELLED
        assert await types_of(engine, queued.id) == ["run.queued", "run.cancelled"]
        await engine.cancel(first.id)
        await engine.wait(first.id, timeout=10)
        assert (await engine.get_run(queued.id)).status is culm.RunStatus.CANCELLED

    async def test_twice_is_the_same_as_once(self, engine: culm.Engine) -> None:
        run = await engine.start_run("waiter")
        await until_running(engine, run.id)
        await engine.cancel(run.id, by="ann", reason="first")
        await engine.cancel(run.id, by="bob", reason="second")
        await engine.wait(run.id, timeout=10)
        again = await engine.cancel(run.id, by="bob", reason="third")
        assert again.status is culm.RunStatus.CANCELLED
        events = await engine.events(run.id)
        assert [e.type for e in events].count("run.cancelled") == 1
        assert events[-1].data["by"] == "ann"

    async def test_many_at_once_while_the_run_ends(self, engine: culm.Engine) -> None:
        """Cancels that race the run's own end all answer with the run, never an error."""
        for _ in range(5):
            run = await engine.start_run("waiter")
            await until_running(engine, run.id)
            answers = await asyncio.gather(
                *(engine.cancel(run.id, reason=f"#{i}") for i in range(30)),
                return_exceptions=True,
            )
            assert [a for a in answers if not isinstance(a, culm.Run)] == []
            assert (await engine.wait(run.id, timeout=10)).status is culm.RunStatus.CANCELLED

    async def test_after_completion_says_already_finished(self, engine: culm.Engine) -> None:
        run = await engine.start_run("echo", "hi")
        before = await engine.wait(run.id, timeout=10)
        with pytest.raises(culm.RunFinished, match="already finished with status completed"):
            await engine.cancel(run.id)
        after = await engine.get_run(run.id)
        assert after.to_dict() == before.to_dict()
        assert await types_of(engine, run.id) == ["run.queued", "run.started", "run.completed"]

    async def test_unknown_run(self, engine: culm.Engine) -> None:
        with pytest.raises(culm.NotFound):
            await engine.cancel("run_missing")

    async def test_agent_code_can_clean_up_and_reraise(self, engine: culm.Engine) -> None:
        cleaned = asyncio.Event()
        app = culm.App()

        @app.agent
        async def careful(run: culm.RunContext, input: None = None) -> None:
            try:
                await run.sleep(3600)
            except culm.RunCancelled:
                cleaned.set()
                raise

        engine.app = app
        run = await engine.start_run("careful")
        await until_running(engine, run.id)
        await engine.cancel(run.id)
        assert (await engine.wait(run.id, timeout=10)).status is culm.RunStatus.CANCELLED
        assert cleaned.is_set()


class TestFailure:
    """An agent that raises ends failed; the process keeps serving."""

    async def test_failed_with_the_message(self, engine: culm.Engine) -> None:
        bad = await engine.start_run("crash", "disk on fire")
        good = await engine.start_run("count", 3)
        failed = await engine.wait(bad.id, timeout=10)
        assert failed.status is culm.RunStatus.FAILED
        assert failed.state.error == "RuntimeError: disk on fire"
        assert await types_of(engine, bad.id) == [
            "run.queued",
            "run.started",
            "test.before_crash",
            "run.failed",
        ]
        assert (await engine.wait(good.id, timeout=10)).status is culm.RunStatus.COMPLETED

    async def test_output_that_is_not_json_fails_clearly(self, engine: culm.Engine) -> None:
        app = culm.App()

        @app.agent
        async def odd(run: culm.RunContext, input: None = None) -> object:
            return object()

        engine.app = app
        run = await engine.wait((await engine.start_run("odd")).id, timeout=10)
        assert run.status is culm.RunStatus.FAILED
        assert run.state.error is not None
        assert "not JSON serializable" in run.state.error

    async def test_reserved_event_types_are_refused(self, engine: culm.Engine) -> None:
        app = culm.App()

        @app.agent
        async def forger(run: culm.RunContext, input: None = None) -> None:
            await run.emit("run.completed", {"output": "fake"})

        engine.app = app
        run = await engine.wait((await engine.start_run("forger")).id, timeout=10)
        assert run.status is culm.RunStatus.FAILED
        assert "reserved" in (run.state.error or "")
