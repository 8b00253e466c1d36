"""Durable execution figures: how fast a restarted process resumes runs, what a step costs,
and what journaling costs a model agent.

    python bench/bench_resume.py [--reps 3] [--runs 100]

- restart: a child process runs ``--runs`` resumable runs, each past a recorded step and
  waiting; it is killed with SIGKILL; a new engine opens the database. Time from opening
  to the first event a resumed run emits after its resume, and to the last run's.
- steps: a trivial agent doing 2,000 ``run.step`` calls, beside one doing 2,000 emits.
- model agent: a scripted model agent of 20 rounds with a tool call each (the tool's start
  is made durable before it runs, the round's history after its events): events/s and
  rounds/s, beside the same agent with those two waits for the disk taken out (what a
  round cost before runs could be resumed).

Medians of ``--reps`` repetitions, each on a fresh SQLite file (synchronous=FULL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import culm
from culm.llm.base import ModelRequest, ModelResponse, TextDelta, ToolCall, Usage
from culm.testing import override_model

app = culm.App()


@app.agent(resume=True)
async def waits(run: culm.RunContext, input: None = None) -> str:
    """A step, then (first attempt) a long wait; a resumed attempt says so and ends."""
    await run.step("prepare", lambda: "ready")
    if run.attempt == 0:
        await run.sleep(3600)
    await run.emit("bench.resumed", {"attempt": run.attempt})
    return "done"


@app.agent
async def stepping(run: culm.RunContext, input: int) -> int:
    for i in range(input):
        await run.step("step", lambda i=i: i)
    return input


@app.agent
async def emitting(run: culm.RunContext, input: int) -> int:
    for i in range(input):
        await run.emit("bench.tick", {"i": i})
    return input


@app.tool
def look(n: int) -> str:
    """Looks something up."""
    return f"found {n}"


app.add_agent("rounds", model="openai:none", tools=[look], max_rounds=25)


class Rounds:
    """Asks for ``look`` once per round, ``rounds`` times, streaming a few words each."""

    name = "bench"

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Rounds]:
        yield self

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        for word in ("Let", " me", " look", " that", " up."):
            yield TextDelta(word)
        if done < self.rounds:
            call = ToolCall(f"c{done}", "look", f'{{"n": {done}}}')
            yield ModelResponse("Let me look that up.", (call,), Usage(50, 5), "tool_calls")
        else:
            yield ModelResponse("Found it.", (), Usage(50, 3), "stop")


def settings(path: Path) -> culm.Settings:
    return culm.Settings(database_url=f"sqlite:///{path}", scheduler=False)


async def child(path: str, runs: int) -> None:
    """The process to be killed: starts the runs, says when all wait, then waits."""
    async with culm.Engine(app, settings(Path(path))) as engine:
        started = [await engine.start_run("waits") for _ in range(runs)]
        for run in started:
            async for event in engine.subscribe(run.id):
                if event.type == "step.completed":
                    break
        print("ready", flush=True)
        await asyncio.sleep(3600)


async def restart(runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "culm.db"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--child",
            str(path),
            "--runs",
            str(runs),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        began = time.perf_counter()
        first = last = 0.0
        engine = culm.Engine(app, settings(path))
        seen: set[str] = set()
        with engine.bus.subscribe((("all",),), 100_000) as feed:
            await engine.__aenter__()
            while len(seen) < runs:
                for event in await feed.next(10):
                    if event.type == "bench.resumed":
                        now = time.perf_counter() - began
                        first = first or now
                        seen.add(event.run_id)
                        last = now
        await engine.aclose()
        return first * 1000, last * 1000


async def steps(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        async with culm.Engine(app, settings(Path(directory) / "culm.db")) as engine:
            rates = []
            for agent in ("stepping", "emitting"):
                began = time.perf_counter()
                await engine.wait((await engine.start_run(agent, n)).id)
                rates.append(n / (time.perf_counter() - began))
            return rates[0], rates[1]


async def model_rounds(rounds: int) -> tuple[float, float]:
    with (
        tempfile.TemporaryDirectory() as directory,
        override_model(app, "rounds", Rounds(rounds)),
    ):
        async with culm.Engine(app, settings(Path(directory) / "culm.db")) as engine:
            began = time.perf_counter()
            run = await engine.wait((await engine.start_run("rounds", "go")).id)
            took = time.perf_counter() - began
            assert run.status is culm.RunStatus.COMPLETED, run.state.error
            return run.state.last_seq / took, (rounds + 1) / took


def median(values: list[Any]) -> float:
    return float(statistics.median(values))


async def main(reps: int, runs: int) -> None:
    load = os.getloadavg()[0]
    print(f"culm durable execution, medians of {reps} (load average {load:.1f})")
    results = [await restart(runs) for _ in range(reps)]
    print(
        f"restart with {runs} runs in flight: first resumed event "
        f"{median([r[0] for r in results]):.0f} ms after opening, last "
        f"{median([r[1] for r in results]):.0f} ms"
    )
    rates = [await steps(2_000) for _ in range(reps)]
    step_rate, emit_rate = median([r[0] for r in rates]), median([r[1] for r in rates])
    print(
        f"steps: {step_rate:,.0f} steps/s ({1e6 / step_rate:.0f} us each) beside "
        f"{emit_rate:,.0f} emits/s"
    )
    model = [await model_rounds(20) for _ in range(reps)]
    with without_journal_waits():
        bare = [await model_rounds(20) for _ in range(reps)]
    print(
        f"model agent, 20 rounds with a tool call each: {median([m[0] for m in model]):,.0f} "
        f"events/s, {median([m[1] for m in model]):.0f} rounds/s (without the journal's "
        f"waits: {median([m[0] for m in bare]):,.0f} events/s, "
        f"{median([m[1] for m in bare]):.0f} rounds/s)"
    )


@contextlib.contextmanager
def without_journal_waits() -> Iterator[None]:
    """The model loop as it was before runs could be resumed: a tool runs before its start
    is durable, a round's history is written without waiting for its events."""
    from culm.agent.context import RunContext
    from culm.runtime.history import SessionHistory

    flush, append = RunContext.flush, SessionHistory.append

    async def no_flush(self: RunContext) -> None:
        return None

    async def append_now(self: SessionHistory, messages: Any) -> None:
        self._flush = None
        await append(self, messages)

    RunContext.flush = no_flush  # type: ignore[method-assign]
    SessionHistory.append = append_now  # type: ignore[method-assign]
    try:
        yield
    finally:
        RunContext.flush = flush  # type: ignore[method-assign]
        SessionHistory.append = append  # type: ignore[method-assign]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.runs))
    else:
        culm.testing.allow_model_requests()
        asyncio.run(main(args.reps, args.runs))
