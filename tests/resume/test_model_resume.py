"""A model agent whose process dies goes on from its log when resumed: completed rounds
and recorded tool results are not redone, a cut-off model call is made again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import culm
from culm.testing import override_model
from tests.conftest import EngineFactory
from tests.resume.crash import Stepper, crash, stopped_after, transcript, until

Executions = list[int]


KEYS: list[str] = []
"""The idempotency keys the idempotent tool saw, run after run."""


def model_app(executions: Executions, gate: asyncio.Event | None = None) -> culm.App:
    app = culm.App()

    @app.tool
    async def record(n: int) -> str:
        """Records that it ran."""
        if gate is not None and n == 2:
            await gate.wait()  # a tool call to crash in
        executions.append(n)
        return f"recorded {n}"

    @app.tool(idempotent=True)
    async def record_safely(n: int, run: culm.RunContext) -> str:
        """Records that it ran; safe to run again."""
        KEYS.append(run.idempotency_key)
        if gate is not None and n == 2 and not gate.is_set():
            await gate.wait()
        executions.append(n)
        return f"recorded {n}"

    app.add_agent("worker", model="openai:none", tools=[record, record_safely], max_rounds=8)
    return app


async def clean_stream(engine: culm.Engine, run_id: str) -> list[culm.Event]:
    events = await engine.events(run_id, limit=100_000)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.terminal for e in events) == 1 and events[-1].terminal
    return events


async def seq_of(engine: culm.Engine, run_id: str, kind: str, n: int = 1) -> int | None:
    found = [e.seq for e in await engine.events(run_id, limit=100_000) if e.type == kind]
    return found[n - 1] if len(found) >= n else None


class TestKillPoints:
    async def test_mid_stream_of_an_answer(self, make_engine: EngineFactory) -> None:
        executions: Executions = []
        app = model_app(executions)
        model = Stepper(steps=2, hold=2)
        with override_model(app, "worker", model):
            async with make_engine(app) as first:
                run = await first.start_run("worker", "go")

                async def streaming_round_two() -> bool:
                    events = await first.events(run.id, limit=1000)
                    return any(e.type == "message.delta" and e.data["round"] == 2 for e in events)

                await until(streaming_round_two)
                await crash(first)
            model.release.set()
            async with make_engine(app) as second:
                ended = await second.wait(run.id, timeout=20)
                assert ended.status is culm.RunStatus.COMPLETED, ended.state.error
                assert ended.attempt == 1
                events = await clean_stream(second, run.id)
        kinds = [e.type for e in events]
        assert kinds.count("run.resumed") == 1 and kinds.count("round.restarted") == 1
        restarted = next(e for e in events if e.type == "round.restarted")
        started_2 = next(e for e in events if e.type == "round.started" and e.data["round"] == 2)
        assert restarted.data == {"round": 2, "attempt": 1, "discard_after_seq": started_2.seq}
        # the deltas a client drops are exactly those of round 2 before the restart
        void = [
            e for e in events if e.type == "message.delta" and started_2.seq < e.seq < restarted.seq
        ]
        assert void and all(e.data["attempt"] == 0 for e in void)
        assert executions == [1, 2]  # each tool call ran once
        assert ended.state.output["text"] == "done after 2 steps"

    @pytest.mark.parametrize("tool", ["record", "record_safely"])
    async def test_inside_a_tool(self, make_engine: EngineFactory, tool: str) -> None:
        KEYS.clear()
        executions: Executions = []
        gate = asyncio.Event()
        app = model_app(executions, gate)
        with override_model(app, "worker", Stepper(steps=3, tool=tool)):
            async with make_engine(app) as first:
                run = await first.start_run("worker", "go")
                await until(lambda: seq_of(first, run.id, "tool.started", 2))
                await crash(first)
            gate.set()
            async with make_engine(app) as second:
                ended = await second.wait(run.id, timeout=20)
                events = await clean_stream(second, run.id)
        assert ended.status is culm.RunStatus.COMPLETED
        failed = [e.data for e in events if e.type == "tool.failed"]
        if tool == "record":  # not idempotent: not run again; the model is told
            assert executions == [1, 3]
            assert len(failed) == 1 and "interrupted by a restart" in failed[0]["error"]
        else:  # idempotent: run again, once, to completion, under the same key
            assert executions == [1, 2, 3]
            assert failed == []
            keys = [f"{run.id}:{n}:0" for n in (1, 2, 2, 3)]
            assert keys == KEYS

    async def test_between_rounds(self, make_engine: EngineFactory) -> None:
        executions: Executions = []
        app = model_app(executions)
        model = Stepper(steps=3, hold=3)
        with override_model(app, "worker", model):
            async with make_engine(app) as first:
                run = await first.start_run("worker", "go")
                await until(lambda: seq_of(first, run.id, "round.completed", 2))
                await crash(first)
            model.release.set()
            async with make_engine(app) as second:
                ended = await second.wait(run.id, timeout=20)
                events = await clean_stream(second, run.id)
        assert ended.status is culm.RunStatus.COMPLETED
        assert executions == [1, 2, 3]
        rounds = [e.data["round"] for e in events if e.type == "round.started"]
        assert rounds == [1, 2, 3, 4]  # no round redone

    async def test_right_after_a_tool_completed(self, make_engine: EngineFactory) -> None:
        executions: Executions = []
        app = model_app(executions)
        model = Stepper(steps=2)
        with override_model(app, "worker", model):
            async with make_engine(app) as first:
                # the process dies after the result is committed, before the round's
                # messages reach the history
                stuck = asyncio.Event()
                append = first.store.append_messages

                async def append_or_die(batch: Any, fence: Any = None) -> None:
                    if any(m.role == "tool" for m in batch):
                        stuck.set()
                        await asyncio.Event().wait()
                    await append(batch, fence)

                first.store.append_messages = append_or_die  # type: ignore[method-assign]
                run = await first.start_run("worker", "go")
                await until(lambda: _set(stuck))
                assert await seq_of(first, run.id, "tool.completed", 1)
                await crash(first)
            async with make_engine(app) as second:
                ended = await second.wait(run.id, timeout=20)
                events = await clean_stream(second, run.id)
        assert ended.status is culm.RunStatus.COMPLETED
        assert executions.count(1) == 1
        # the model's next request carried the recorded result
        assert any(m.get("content") == "recorded 1" for r in model.requests for m in r.messages)
        assert [e.type for e in events].count("tool.completed") == 2, " ".join(
            e.type for e in events if e.type != "message.delta"
        )


class TestLimits:
    async def test_max_resumes_then_interrupted(self, make_engine: EngineFactory) -> None:
        app = model_app([])
        model = Stepper(steps=1, hold=1)  # never released: every attempt stalls
        with override_model(app, "worker", model):
            async with make_engine(app, max_resumes=2) as engine:
                run = await engine.start_run("worker", "go")
                await until(lambda: seq_of(engine, run.id, "message.delta"))
                await crash(engine)
            for attempt in (1, 2):
                async with make_engine(app, max_resumes=2) as engine:
                    assert (await engine.get_run(run.id)).attempt == attempt
                    await until(lambda e=engine, n=attempt: seq_of(e, run.id, "round.restarted", n))
                    await crash(engine)
            async with make_engine(app, max_resumes=2) as engine:
                ended = await engine.get_run(run.id)
                assert ended.status is culm.RunStatus.INTERRUPTED
                assert ended.state.error is not None and "max_resumes" in ended.state.error
                await clean_stream(engine, run.id)

    async def test_hand_backs_at_shutdown_do_not_count(self, make_engine: EngineFactory) -> None:
        """Deploys (a graceful close hands the run back) do not use up ``max_resumes``:
        only resumes after the process died count."""
        app = model_app([])
        model = Stepper(steps=1, hold=1)  # never released: every attempt stalls
        with override_model(app, "worker", model):
            async with make_engine(app, max_resumes=1) as engine:
                run = await engine.start_run("worker", "go")
                await until(lambda: seq_of(engine, run.id, "message.delta"))
            for n in (1, 2, 3):  # closed while the run goes on: handed back each time
                async with make_engine(app, max_resumes=1) as engine:
                    await until(lambda e=engine, n=n: seq_of(e, run.id, "round.restarted", n))
                    if n == 3:
                        await crash(engine)  # the one resume max_resumes=1 allows
            async with make_engine(app, max_resumes=1) as engine:
                assert (await engine.get_run(run.id)).attempt == 4
                await until(lambda e=engine: seq_of(e, run.id, "round.restarted", 4))
                await crash(engine)
            async with make_engine(app, max_resumes=1) as engine:
                ended = await engine.get_run(run.id)
                events = await clean_stream(engine, run.id)
        assert ended.status is culm.RunStatus.INTERRUPTED
        assert ended.state.error == (
            "its process died 2 times; it was resumed after 1 of them, the most allowed "
            "(max_resumes)"
        )
        causes = [e.data["cause"] for e in events if e.type == "run.resumed"]
        assert causes == ["shutdown", "shutdown", "shutdown", "crash"]
        assert [e.data["attempt"] for e in events if e.type == "run.resumed"] == [1, 2, 3, 4]

    async def test_a_run_handed_back_and_cancelled_ends_cancelled_at_once(
        self, make_engine: EngineFactory
    ) -> None:
        """A run another process handed back at its shutdown is held by nobody: a cancel
        ends it at once (taken over to end it), not at the next look for orphaned runs."""
        app = model_app([])
        model = Stepper(steps=1, hold=1)
        with override_model(app, "worker", model):
            async with make_engine(app) as other:  # its next look is a lease away
                async with make_engine(app) as engine:
                    run = await engine.start_run("worker", "go")
                    await until(lambda: seq_of(engine, run.id, "message.delta"))
                # closed: handed back, and not yet taken over by the other process
                assert (await other.store.ownership(run.id)) is not None
                cancelled = await other.cancel(run.id, by="alice", reason="no longer needed")
                assert cancelled.status is culm.RunStatus.CANCELLED
                events = await clean_stream(other, run.id)
        assert events[-1].data["by"] == "alice"
        assert "run.resumed" not in [e.type for e in events]

    async def test_not_resumed_when_the_agent_does_not_allow_it(
        self, make_engine: EngineFactory
    ) -> None:
        app = model_app([])
        app.agents["worker"] = __import__("dataclasses").replace(app.agents["worker"], resume=False)
        model = Stepper(steps=1, hold=1)
        with override_model(app, "worker", model):
            async with make_engine(app) as engine:
                run = await engine.start_run("worker", "go")
                await until(lambda: seq_of(engine, run.id, "message.delta"))
                await crash(engine)
            async with make_engine(app) as engine:
                ended = await engine.get_run(run.id)
                assert ended.status is culm.RunStatus.INTERRUPTED

    async def test_cancelled_while_down_ends_cancelled(self, make_engine: EngineFactory) -> None:
        app = model_app([])
        model = Stepper(steps=1, hold=1)
        with override_model(app, "worker", model):
            async with make_engine(app) as other:  # another process, up all along
                async with make_engine(app) as engine:
                    run = await engine.start_run("worker", "go")
                    await until(lambda: seq_of(engine, run.id, "message.delta"))
                    await crash(engine)
                # before anyone resumed it, the other process takes a cancel
                await other.cancel(run.id, reason="changed my mind")
                ended = await other.get_run(run.id)
                assert ended.status is culm.RunStatus.CANCELLED
            async with make_engine(app) as engine:
                assert (await engine.get_run(run.id)).status is culm.RunStatus.CANCELLED
                events = await clean_stream(engine, run.id)
                assert "run.resumed" not in [e.type for e in events]

    async def test_a_cancel_stored_while_down_is_honoured_not_resumed(
        self, make_engine: EngineFactory
    ) -> None:
        """A cancel asked for in a process that could not tell the owner was dead (on
        another host, inside its lease) is only stored on the run: whoever takes the run
        over ends it cancelled, with who asked and why, and never resumes it."""
        executions: Executions = []
        app = model_app(executions)
        model = Stepper(steps=2, hold=2)
        with override_model(app, "worker", model):
            async with make_engine(app) as engine:
                run = await engine.start_run("worker", "go")
                await until(lambda: seq_of(engine, run.id, "round.started", 2))
                await crash(engine)
            asked = len(model.requests)
            # an API process, which leaves runs to the processes that execute them, stores
            # the request as it does for an owner it cannot tell is dead (on another host)
            async with make_engine(app, role="api") as other:
                assert await other.store.request_cancel(run.id, "alice", "changed my mind")
                assert (await other.get_run(run.id)).status is culm.RunStatus.RUNNING
            model.release.set()
            async with make_engine(app) as engine:
                ended = await engine.wait(run.id, timeout=20)
                events = await clean_stream(engine, run.id)
        assert ended.status is culm.RunStatus.CANCELLED
        assert ended.attempt == 0
        assert events[-1].type == "run.cancelled"
        assert events[-1].data == {
            "by": "alice",
            "reason": "changed my mind",
            "forced": False,
            "error": "cancelled by alice: changed my mind",
        }
        assert "run.resumed" not in [e.type for e in events]
        assert len(model.requests) == asked and executions == [1]  # nothing more was done


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_kill_points_give_the_uninterrupted_transcript(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Killed after any number of committed events, a resumed run ends as an
    uninterrupted one does: the same rounds, tool calls, results and answer. (The tool is
    idempotent: a call the kill cut off is made again; a non-idempotent one would end in an
    error result instead, as the kill-point tests show.)

    The kill is exact: the run stops before its next event once ``kill_after`` are
    committed, and the process dies there, so the log holds seqs 1..kill_after."""

    async def scenario() -> tuple[list[Any], list[Any], Executions, Executions]:
        directory = tmp_path_factory.mktemp("kill")
        whole_runs: Executions = []
        app = model_app(whole_runs)
        with override_model(app, "worker", Stepper(steps=4, tool="record_safely")):
            url = f"sqlite:///{directory}/whole.db"
            async with culm.Engine(app, culm.Settings(database_url=url)) as engine:
                run = await engine.wait((await engine.start_run("worker", "go")).id, 20)
                whole_events = await engine.events(run.id, limit=10_000)
        # any point from after run.started to before the last event ahead of the end
        kill_after = data.draw(st.integers(2, len(whole_events) - 2), label="kill_after")
        executions: Executions = []
        app = model_app(executions)
        with override_model(app, "worker", Stepper(steps=4, tool="record_safely")):
            url = f"sqlite:///{directory}/killed.db"
            first = culm.Engine(app, culm.Settings(database_url=url))
            await first.__aenter__()
            with stopped_after(first, kill_after) as stopped:
                run = await first.start_run("worker", "go")
                await until(lambda: _set(stopped))
                await crash(first)
            async with culm.Engine(app, culm.Settings(database_url=url)) as second:
                ended = await second.wait(run.id, timeout=20)
                assert ended.status is culm.RunStatus.COMPLETED
                assert ended.attempt == 1
                events = await second.events(run.id, limit=10_000)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        resumed = [e for e in events if e.type == "run.resumed"]
        assert len(resumed) == 1 and resumed[0].data["after_seq"] == kill_after
        return transcript(whole_events), transcript(events), whole_runs, executions

    whole, resumed, whole_runs, executions = asyncio.run(scenario())
    assert resumed == whole
    assert whole_runs == [1, 2, 3, 4]
    # every call ran; at most the one the kill cut off ran twice
    assert sorted(set(executions)) == [1, 2, 3, 4] and len(executions) <= 5


async def _set(event: asyncio.Event) -> bool:
    return event.is_set()
