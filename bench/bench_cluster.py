"""Benchmark culm as a cluster on PostgreSQL: one API process (``CULM_ROLE=api``) and 1, 2
or 4 ``culm worker`` processes, beside the embedded default (SQLite, one process).

Each figure is the median of ``--repeat`` repetitions, each on a fresh database:

- runs/s: 400 trivial runs over HTTP, 40 in flight, each POSTed then waited for
- events/s: 4 runs emitting 5,000 events each at once, each followed by one SSE client
- emit on a worker -> SSE client on the API process, p50 / p99 (one run at 1,000 events/s)
- cancel through the API -> terminal event on an SSE client, p50 / p99 (30 runs)

    python bench/bench_cluster.py [--repeat 3] [--workers 1 2 4] [--no-sqlite]

Only 127.0.0.1 is contacted; every loop is bounded in count and time. PostgreSQL must run
on 127.0.0.1:5432 (``CULM_BENCH_PG_URL`` to change it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("CULM_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")
LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=200)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            args, cwd=HERE, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=err
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


async def _schema(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def deployment(workers: int, directory: Path) -> AsyncIterator[str]:
    """The API's URL: SQLite in one process (``workers`` 0) or PostgreSQL with workers."""
    name = f"culm_bench_{uuid.uuid4().hex[:10]}"
    if workers:
        await _schema(f'CREATE SCHEMA "{name}"')
        url = f"{PG_URL}?search_path={name}"
        env = {"CULM_DATABASE_URL": url, "CULM_BUS_URL": f"{url}&channel={name}"}
        env["CULM_ROLE"] = "api"
    else:
        env = {"CULM_DATABASE_URL": f"sqlite:///{directory / 'bench.db'}"}
    processes = []
    try:
        command = [sys.executable, "bench_http.py", "--serve", "culm"]
        api = _spawn(command, env, directory / "api.log")
        processes.append(api)
        assert api.stdout is not None
        base = f"http://127.0.0.1:{int(api.stdout.readline())}"
        for n in range(workers):
            command = [sys.executable, "-m", "culm.cli", "worker", "agents_http:app"]
            log = directory / f"worker{n}.log"
            processes.append(_spawn([*command, "--concurrency", "200"], env, log))
            deadline = time.monotonic() + 30
            while b"ready" not in log.read_bytes():
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as probe:
            while True:
                try:
                    if (await probe.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (directory / "api.log").read_text()
                await asyncio.sleep(0.05)
        yield base
    finally:
        for process in reversed(processes):
            _stop(process)
        if workers:
            await _schema(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# client helpers


async def start(http: httpx.AsyncClient, agent: str, input: Any = None) -> dict[str, Any]:
    """Start a run; a keep-alive connection the server closed as it was reused is retried
    (the idempotency key makes the retry the same start)."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"agent": agent, "input": input}
    for attempt in range(3):
        try:
            response = await http.post("/v1/runs", json=body, headers=headers)
            break
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if attempt == 2:
                raise
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


async def until(http: httpx.AsyncClient, run_id: str, marker: bytes) -> None:
    seen = b""
    async with (
        asyncio.timeout(60),
        http.stream("GET", f"/v1/runs/{run_id}/events") as response,
    ):
        async for chunk in response.aiter_raw():
            seen = seen[-256:] + chunk
            if marker in seen:
                return


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# the benchmarks


async def runs_per_second(http: httpx.AsyncClient) -> dict[str, float]:
    total, width = 400, 40
    await start(http, "noop")  # warm up
    left = list(range(total))

    async def client() -> None:
        while left:
            left.pop()
            run = await start(http, "noop")
            while True:
                waited = await http.post(f"/v1/runs/{run['id']}/wait", params={"timeout": 30})
                if waited.json()["status"] not in ("pending", "running"):
                    break

    began = time.perf_counter()
    async with asyncio.timeout(300):
        await asyncio.gather(*(client() for _ in range(width)))
    return {"runs/s": total / (time.perf_counter() - began)}


async def events_per_second(http: httpx.AsyncClient) -> dict[str, float]:
    runs, each = 4, 5_000

    async def one() -> int:
        run = await start(http, "burst", each)
        count, tail = 0, b""
        async with http.stream("GET", f"/v1/runs/{run['id']}/events") as response:
            async for chunk in response.aiter_raw():
                data = tail + chunk
                count += data.count(b"\nevent: ") - tail.count(b"\nevent: ")
                tail = data[-64:]
        return count

    began = time.perf_counter()
    async with asyncio.timeout(300):
        counts = await asyncio.gather(*(one() for _ in range(runs)))
    assert all(c == each + 3 for c in counts), counts
    return {"events/s (4 runs x 5,000, SSE)": sum(counts) / (time.perf_counter() - began)}


async def delivery_delay(http: httpx.AsyncClient) -> dict[str, float]:
    n = 2_000
    run = await start(http, "paced", {"n": n, "rate": 1_000})
    delays: list[float] = []
    buffer = b""
    async with (
        asyncio.timeout(120),
        http.stream("GET", f"/v1/runs/{run['id']}/events") as response,
    ):
        async for chunk in response.aiter_raw():
            now = time.time()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data: ") and b'"bench.tick"' in line:
                    delays.append(now - orjson.loads(line[6:])["data"]["t"])
    assert len(delays) == n, len(delays)
    return {
        "emit->SSE p50 ms (1,000 ev/s)": pct(delays, 0.5) * 1000,
        "emit->SSE p99 ms (1,000 ev/s)": pct(delays, 0.99) * 1000,
    }


async def cancel_latency(http: httpx.AsyncClient) -> dict[str, float]:
    samples = []
    for _ in range(30):
        run = await start(http, "waiter")
        await until(http, run["id"], b"event: run.started")
        async with http.stream("GET", f"/v1/runs/{run['id']}/events") as response:
            chunks = response.aiter_raw()
            await anext(chunks)
            began = time.perf_counter()
            await http.post(f"/v1/runs/{run['id']}/cancel")
            async with asyncio.timeout(30):
                async for chunk in chunks:
                    if b"event: run.cancelled" in chunk:
                        samples.append(time.perf_counter() - began)
                        break
    return {
        "cancel->terminal p50 ms": pct(samples, 0.5) * 1000,
        "cancel->terminal p99 ms": pct(samples, 0.99) * 1000,
    }


BENCHES: list[Callable[[httpx.AsyncClient], Awaitable[dict[str, float]]]] = [
    runs_per_second,
    events_per_second,
    delivery_delay,
    cancel_latency,
]


async def measure(workers: int, repeat: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for bench in BENCHES:
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as directory:
                async with (
                    deployment(workers, Path(directory)) as base,
                    httpx.AsyncClient(base_url=base, timeout=60, limits=LIMITS) as http,
                ):
                    for key, value in (await bench(http)).items():
                        figures.setdefault(key, []).append(value)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median shown)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--no-sqlite", action="store_true", help="skip the one-process figures")
    args = parser.parse_args()
    setups = ([] if args.no_sqlite else [0]) + args.workers
    for workers in setups:
        title = (
            "SQLite, one process (API + executor)"
            if workers == 0
            else f"PostgreSQL, 1 API process + {workers} worker process(es)"
        )
        print(f"{title}, median of {args.repeat}", flush=True)
        figures = asyncio.run(measure(workers, args.repeat))
        for key, values in figures.items():
            shown = ", ".join(f"{v:,.1f}" for v in values)
            print(f"  {key:<36} {statistics.median(values):>10,.1f}   ({shown})", flush=True)


if __name__ == "__main__":
    main()
