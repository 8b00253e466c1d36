"""In-process figures of the core engine (no HTTP): throughput, delay, memory, cancel.

    python bench/bench_core.py [--reps 5] [--quick]

Each figure is the median of several repetitions, on a fresh SQLite file each time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

import culm

app = culm.App()


EMIT_START = [0.0]
GO: list[asyncio.Event] = []


@app.agent
async def burst(run: culm.RunContext, input: int) -> int:
    if GO:  # subscribers attach first: this measures live fan-out
        await GO[0].wait()
    EMIT_START[0] = time.perf_counter()
    for i in range(input):
        await run.emit("bench.tick", {"i": i})
    return input


@app.agent
async def paced(run: culm.RunContext, input: dict[str, float]) -> None:
    """Emits ``n`` events at ``rate`` per second, each carrying its emit time."""
    interval = 1.0 / input["rate"]
    start = time.perf_counter()
    for i in range(int(input["n"])):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await run.emit("bench.tick", {"t": time.perf_counter()})


@app.agent
async def trivial(run: culm.RunContext, input: None = None) -> str:
    return "ok"


@app.agent
async def idle(run: culm.RunContext, input: None = None) -> None:
    await run.sleep(3600)


def settings(db: Path, **kw: object) -> culm.Settings:
    return culm.Settings(database_url=f"sqlite:///{db}", **kw)  # type: ignore[arg-type]


async def throughput(db: Path, events: int, subscribers: int) -> float:
    """Events appended and delivered to every subscriber, per second."""
    async with culm.Engine(app, settings(db, subscriber_buffer=100_000)) as engine:
        session = await engine.create_session()
        ready = asyncio.Event()
        counts = [0] * subscribers
        run_id = ""

        attached = [0]

        async def follow(i: int) -> None:
            await ready.wait()
            async for batch in engine.subscribe_batches(run_id):
                if counts[i] == 0:  # the first batch comes after the live feed is in place
                    attached[0] += 1
                    if attached[0] == subscribers:
                        GO[0].set()
                counts[i] += len(batch)

        tasks = [asyncio.create_task(follow(i)) for i in range(subscribers)]
        GO[:] = [asyncio.Event()]
        run = await engine.start_run("burst", events, session_id=session.id)
        run_id = run.id
        ready.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - EMIT_START[0]
        assert all(c == events + 3 for c in counts), counts
        return events / elapsed


async def delay(db: Path, rate: float, n: int) -> tuple[float, float]:
    """p50 and p99 milliseconds from emit to a subscriber receiving it."""
    async with culm.Engine(app, settings(db)) as engine:
        run = await engine.start_run("paced", {"rate": rate, "n": n})
        delays = []
        async for event in engine.subscribe(run.id):
            if event.type == "bench.tick":
                delays.append((time.perf_counter() - event.data["t"]) * 1000)
        q = statistics.quantiles(delays, n=100)
        return statistics.median(delays), q[98]


async def runs_per_second(db: Path, runs: int, concurrency: int) -> float:
    """Trivial runs started and finished per second, ``concurrency`` at a time."""
    async with culm.Engine(app, settings(db)) as engine:
        limit = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with limit:
                run = await engine.start_run("trivial")
                done = await engine.wait(run.id)
                assert done.status is culm.RunStatus.COMPLETED

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(runs)))
        return runs / (time.perf_counter() - t0)


async def memory_per_run(db: Path, runs: int) -> float:
    """Bytes of RSS per idle active run, with ``runs`` runs waiting at a safe point."""
    proc = psutil.Process()
    async with culm.Engine(app, settings(db, lease_seconds=3600)) as engine:
        warm = await engine.start_run("idle")
        await engine.cancel(warm.id)
        await engine.wait(warm.id)
        gc.collect()
        before = proc.memory_info().rss
        started = [await engine.start_run("idle") for _ in range(runs)]
        await engine.log.flush()
        gc.collect()
        after = proc.memory_info().rss
        running = sum(
            1 for r in await engine.list_runs(limit=runs + 10) if r.status is culm.RunStatus.RUNNING
        )
        assert running == runs, running
        for run in started:
            await engine.cancel(run.id)
        return (after - before) / runs


async def cancel_latency(db: Path, samples: int) -> tuple[float, float]:
    """p50 and p99 milliseconds from cancel request to the terminal event being durable."""
    async with culm.Engine(app, settings(db)) as engine:
        times = []
        for _ in range(samples):
            run = await engine.start_run("idle")
            async for event in engine.subscribe(run.id):
                if event.type == "run.started":
                    break
            t0 = time.perf_counter()
            await engine.cancel(run.id)
            done = await engine.wait(run.id)
            times.append((time.perf_counter() - t0) * 1000)
            assert done.status is culm.RunStatus.CANCELLED
        q = statistics.quantiles(times, n=100)
        return statistics.median(times), q[98]


def median_of(reps: int, job: Callable[[Path], Awaitable[float | tuple[float, float]]]) -> object:
    results = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(asyncio.run(job(Path(tmp) / "bench.db")))
    if isinstance(results[0], tuple):
        return tuple(statistics.median(r[i] for r in results) for i in range(2))  # type: ignore[index]
    return statistics.median(results)  # type: ignore[type-var]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, 1 rep")
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    scale = 10 if args.quick else 1
    print(f"culm core bench, median of {reps}, SQLite WAL synchronous=FULL")
    ev1 = median_of(reps, lambda db: throughput(db, 50_000 // scale, 1))
    print(f"events/s, 1 subscriber ............ {ev1:>10,.0f}   (target >= 20,000)")
    ev100 = median_of(reps, lambda db: throughput(db, 20_000 // scale, 100))
    print(f"events/s, 100 subscribers (each) ... {ev100:>10,.0f}")
    p50, p99 = median_of(reps, lambda db: delay(db, 1000, 3000 // scale))  # type: ignore[misc]
    print(
        f"emit->subscriber at 1,000 ev/s ..... p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        "   (target p99 < 20 ms)"
    )
    rps = median_of(reps, lambda db: runs_per_second(db, 2000 // scale, 50))
    print(f"trivial runs/s ..................... {rps:>10,.0f}   (target >= 500)")
    mem = median_of(min(reps, 3), lambda db: memory_per_run(db, 10_000 // scale))
    print(f"RSS per idle active run ............ {mem / 1024:>10.1f} KB (target < 30 KB)")
    c50, c99 = median_of(reps, lambda db: cancel_latency(db, 200 // scale))  # type: ignore[misc]
    print(
        f"cancel -> terminal durable ......... p50 {c50:.2f} ms, p99 {c99:.2f} ms"
        "   (target p99 < 20 ms)"
    )


if __name__ == "__main__":
    main()
