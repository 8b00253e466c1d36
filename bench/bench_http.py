"""Benchmark the HTTP API through a real server and real clients on loopback.

Starts ``culm`` in a subprocess (SQLite in a temporary directory, the settings' defaults
unless told otherwise), then measures, each as the median of ``--repeat`` repetitions:

- runs started per second over HTTP (200 trivial runs, 20 at a time, until all finished)
- start over HTTP -> first event on an SSE client
- events per second to 1, 10 and 100 SSE clients of a run emitting 5,000 events
- p50 / p99 delay from emit to an SSE client receiving the event (1,000 events/s)
- cancel request -> terminal event on an SSE client
- server memory per waiting run (500 runs), and with 1,000 idle SSE connections

    python bench/bench_http.py [--repeat 3] [--synchronous FULL|NORMAL] [--only NAME ...]

Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

HERE = Path(__file__).resolve().parent
TERMINAL = (b"event: run.completed", b"event: run.failed", b"event: run.cancelled")
LIMITS = httpx.Limits(max_connections=2_000, max_keepalive_connections=200)


# the server


def serve() -> None:
    """Child mode: serve bench agents on a free loopback port, printed on stdout."""
    import culm
    from culm.api import create_app
    from culm.api.server import Server as ApiServer
    from culm.api.server import server_config

    sys.path.insert(0, str(HERE))
    from agents_http import app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    settings = culm.Settings()
    api = create_app(app, settings)
    # the configuration `culm serve` runs, connection limits included
    config = server_config(
        api,
        settings,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
    )
    ApiServer(config, api).run(sockets=[sock])


class Server:
    """The server subprocess, on a fresh database for each benchmark."""

    def __init__(self, directory: Path, synchronous: str) -> None:
        env = {
            **os.environ,
            "CULM_DATABASE_URL": f"sqlite:///{directory / 'bench.db'}",
            "CULM_SQLITE_SYNCHRONOUS": synchronous,
        }
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], env=env, stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the server did not start")

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


# client helpers


async def start(http: httpx.AsyncClient, agent: str, input: Any = None) -> dict[str, Any]:
    response = await http.post("/v1/runs", json={"agent": agent, "input": input})
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


async def drain(http: httpx.AsyncClient, run_id: str) -> tuple[int, float]:
    """Read a run's stream to its end; (events received, monotonic time of the last)."""
    count = 0
    tail = b""
    async with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        async for chunk in response.aiter_raw():
            data = tail + chunk
            count += data.count(b"\nevent: ") - tail.count(b"\nevent: ")
            tail = data[-64:]
    return count, time.monotonic()


async def until(http: httpx.AsyncClient, run_id: str, marker: bytes) -> None:
    """Follow a run's stream until ``marker`` appears in it."""
    seen = b""
    async with asyncio.timeout(30):
        async with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            async for chunk in response.aiter_raw():
                seen = seen[-256:] + chunk
                if marker in seen:
                    return


# the benchmarks: each returns its figures for one repetition


async def runs_per_second(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    total, width = 200, 20
    queue = list(range(total))

    async def worker() -> None:
        while queue:
            queue.pop()
            run = await start(http, "noop")
            while True:
                waited = await http.post(f"/v1/runs/{run['id']}/wait", params={"timeout": 30})
                if waited.json()["status"] not in ("pending", "running"):
                    break

    began = time.perf_counter()
    async with asyncio.timeout(120):
        await asyncio.gather(*(worker() for _ in range(width)))
    return {"runs/s": total / (time.perf_counter() - began)}


async def first_event(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    samples = []
    for _ in range(20):
        began = time.perf_counter()
        run = await start(http, "noop")
        async with http.stream("GET", f"/v1/runs/{run['id']}/events") as response:
            async for chunk in response.aiter_raw():
                if b"\nevent: " in chunk or chunk.startswith(b"id: "):
                    samples.append(time.perf_counter() - began)
                    break
    return {"first event ms": statistics.median(samples) * 1000}


def fan_out(clients: int) -> Callable[[httpx.AsyncClient, Server], Awaitable[dict[str, float]]]:
    async def bench(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
        events = 5_000
        began = time.monotonic()
        run = await start(http, "burst", events)
        async with asyncio.timeout(120):
            results = await asyncio.gather(*(drain(http, run["id"]) for _ in range(clients)))
        total = events + 3  # queued, started, completed
        assert all(count == total for count, _ in results), [c for c, _ in results]
        rates = sorted(total / (end - began) for _, end in results)
        return {
            f"{clients} clients: events/s each (median)": statistics.median(rates),
            f"{clients} clients: events/s each (slowest)": rates[0],
        }

    return bench


async def delivery_delay(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    n = 2_000
    run = await start(http, "paced", {"n": n, "rate": 1_000})
    delays = []
    buffer = b""
    async with asyncio.timeout(60):
        async with http.stream("GET", f"/v1/runs/{run['id']}/events") as response:
            async for chunk in response.aiter_raw():
                now = time.time()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"data: ") and b'"bench.tick"' in line:
                        delays.append(now - orjson.loads(line[6:])["data"]["t"])
    delays.sort()
    assert len(delays) == n, len(delays)
    return {
        "emit->client p50 ms (1,000 ev/s)": delays[len(delays) // 2] * 1000,
        "emit->client p99 ms (1,000 ev/s)": delays[int(len(delays) * 0.99)] * 1000,
    }


async def cancel_latency(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    samples = []
    for _ in range(20):
        run = await start(http, "waiter")
        await until(http, run["id"], b"event: run.started")
        async with http.stream("GET", f"/v1/runs/{run['id']}/events") as response:
            chunks = response.aiter_raw()
            await anext(chunks)  # the stream is open
            began = time.perf_counter()
            await http.post(f"/v1/runs/{run['id']}/cancel")
            async with asyncio.timeout(30):
                async for chunk in chunks:
                    if b"event: run.cancelled" in chunk:
                        samples.append(time.perf_counter() - began)
                        break
    return {"cancel->terminal ms": statistics.median(samples) * 1000}


async def memory_per_run(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    runs = 500
    await start(http, "noop")  # warm every code path once
    before = server.rss()
    started = []
    for _ in range(runs // 25):
        started += await asyncio.gather(*(start(http, "waiter") for _ in range(25)))
    await until(http, started[-1]["id"], b"event: run.started")
    after = server.rss()
    for run in started:
        await http.post(f"/v1/runs/{run['id']}/cancel")
    return {"KB per waiting run": (after - before) / runs / 1024}


async def idle_connections(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    connections = 1_000
    run = await start(http, "waiter")
    await until(http, run["id"], b"event: run.started")
    before = server.rss()
    request = (
        f"GET /v1/runs/{run['id']}/events?after=2 HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()

    async def connect() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return writer

    writers: list[asyncio.StreamWriter] = []
    async with asyncio.timeout(120):
        for _ in range(connections // 100):
            writers += await asyncio.gather(*(connect() for _ in range(100)))
    metrics = (await http.get("/metrics")).text
    streams = next(
        float(line.split()[1]) for line in metrics.splitlines() if line.startswith("culm_sse_")
    )
    after = server.rss()
    for writer in writers:
        writer.close()
    await http.post(f"/v1/runs/{run['id']}/cancel")
    return {
        "idle SSE connections": streams,
        "server RSS MB with them": after / 2**20,
        "KB per idle connection": (after - before) / connections / 1024,
    }


BENCHES: dict[str, Callable[[httpx.AsyncClient, Server], Awaitable[dict[str, float]]]] = {
    "runs": runs_per_second,
    "first": first_event,
    "fan1": fan_out(1),
    "fan10": fan_out(10),
    "fan100": fan_out(100),
    "delay": delivery_delay,
    "cancel": cancel_latency,
    "memory": memory_per_run,
    "idle": idle_connections,
}


async def measure(name: str, synchronous: str, repeat: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as directory:
            server = Server(Path(directory), synchronous)
            try:
                async with httpx.AsyncClient(
                    base_url=server.url, timeout=60, limits=LIMITS
                ) as http:
                    for key, value in (await BENCHES[name](http, server)).items():
                        figures.setdefault(key, []).append(value)
            finally:
                server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median shown)")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=list(BENCHES))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    print(f"HTTP API, SQLite synchronous={args.synchronous}, median of {args.repeat}")
    for name in args.only:
        figures = asyncio.run(measure(name, args.synchronous, args.repeat))
        for key, values in figures.items():
            shown = ", ".join(f"{v:,.1f}" for v in values)
            print(f"  {key:<44} {statistics.median(values):>12,.1f}   ({shown})", flush=True)


if __name__ == "__main__":
    main()
