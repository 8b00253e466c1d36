"""Benchmark the HTTP API on the workloads of TARGETS.md, culm beside a do-nothing ceiling.

Each workload starts a fresh server (culm: SQLite in a temporary directory, settings'
defaults, ``synchronous=FULL``), warms it with 2 trivial runs, and measures; servers
alternate within each workload, so machine noise hits both alike. Figures are medians of
``--repeat`` repetitions, and for each workload the median of culm's ratio to the
ceiling within a repetition (steadier than either figure when the machine has slow spells):

- start: POST a trivial run, open its SSE stream from the start: POST -> its agent event
- runs: 200 trivial runs, at most 20 in flight, each POST followed by its own SSE stream
  read to its end, then a GET: runs/s, and the server's CPU (whole process tree) per run
- stream: one run emitting 5,000 events, one SSE client from the start: POST -> last
  event; the same run with 10 clients joined at once: events/s each
- cancel: 20 runs waiting at a safe point, each with its stream open; cancel request ->
  terminal status seen by a GET polled back to back
- memory: 500 runs waiting: server RSS (process tree) per run
- delay: emit -> SSE client, p50 / p99, one run emitting 1,000 events/s
- idle: 1,000 idle SSE streams: server CPU while nothing happens

    python bench/bench_http.py [--repeat 5] [--only start runs ...] [--servers culm ceiling]
    python bench/bench_http.py --url http://127.0.0.1:8000 [--pid PID]
    python bench/bench_http.py --compare /path/to/other/culm/src   # before/after

``--url`` measures a server already running (it must know the agents of
``agents_http.py`` and the routes ``ceiling.py`` serves); with ``--pid`` its CPU and memory
too. The SSE client is a raw socket reader; plain requests use httpx; all in one process.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psutil

HERE = Path(__file__).resolve().parent
TERMINAL = (b"event: run.completed", b"event: run.failed", b"event: run.cancelled")
TERMINAL_STATUS = {"completed", "failed", "cancelled", "interrupted"}
LIMITS = httpx.Limits(max_connections=2_000, max_keepalive_connections=200)
COMPARE: list[str] = []  # the source tree of ``--compare``


# the servers


def serve(kind: str) -> None:
    """Child mode: serve culm (or the ceiling) on a free loopback port, printed on stdout."""
    import culm
    from culm.api import create_app
    from culm.api.server import Server as ApiServer
    from culm.api.server import server_config

    sys.path.insert(0, str(HERE))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    settings = culm.Settings()
    if kind == "ceiling":
        from ceiling import create_app as ceiling_app

        api = ceiling_app()
    else:
        from agents_http import app

        api = create_app(app, settings)
    # the configuration `culm serve` runs, connection limits included, for both
    config = server_config(api, settings, log_level="warning", access_log=False, backlog=4096)
    if kind == "ceiling":
        import uvicorn

        uvicorn.Server(config).run(sockets=[sock])
    else:
        ApiServer(config, api).run(sockets=[sock])


@dataclass
class Target:
    """A server under test: its URL and, when known, its process (for CPU and memory)."""

    name: str
    url: str
    pid: int | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def tree(self) -> list[psutil.Process]:
        assert self.pid is not None
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def cpu(self) -> float:
        """CPU seconds used so far by the server's process tree."""
        total = 0.0
        for p in self.tree():
            times = p.cpu_times()
            total += times.user + times.system
        return total

    def rss(self) -> int:
        return sum(int(p.memory_info().rss) for p in self.tree())

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def launch(kind: str, directory: Path) -> Target:
    env = {**os.environ, "CULM_DATABASE_URL": f"sqlite:///{directory / 'bench.db'}"}
    if kind == "other":  # culm from another source tree (``--compare``)
        env["PYTHONPATH"] = os.pathsep.join([COMPARE[0], env.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "culm" if kind == "other" else kind],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    target = Target(kind, f"http://127.0.0.1:{int(process.stdout.readline())}", process.pid)
    target.process = process
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{target.url}/healthz", timeout=2).status_code == 200:
                return target
        except httpx.TransportError:
            time.sleep(0.05)
    target.stop()
    raise RuntimeError(f"the {kind} server did not start")


# the client


class Stream:
    """A raw-socket SSE reader: one connection, the response read as it comes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seen = b""

    @classmethod
    async def open(cls, target: Target, run_id: str, after: int = 0) -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        writer.write(
            f"GET /v1/runs/{run_id}/events?after={after} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        stream = cls(reader, writer)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return stream

    async def chunk(self) -> bytes:
        data = await self.reader.read(262_144)
        if not data:
            raise EOFError("the stream ended")
        return data

    async def until(self, *markers: bytes) -> bytes:
        """Read until one of ``markers`` has come; which one."""
        while True:
            for marker in markers:
                if marker in self.seen:
                    self.seen = self.seen[self.seen.index(marker) + len(marker) :]
                    return marker
            self.seen = self.seen[-256:] + await self.chunk()

    async def count_to_end(self) -> int:
        """Events received until the terminal one and the end of the response."""
        count, tail, ended = 0, self.seen, False
        self.seen = b""
        while True:
            data = tail + await self.chunk()
            count += data.count(b"\nevent: ") - tail.count(b"\nevent: ")
            ended = ended or any(t in data for t in TERMINAL)
            tail = data[-64:]
            if ended and tail.endswith(b"\r\n0\r\n\r\n"):
                return count

    def close(self) -> None:
        self.writer.close()


async def start(http: httpx.AsyncClient, agent: str, input: Any = None) -> str:
    response = await http.post("/v1/runs", json={"agent": agent, "input": input})
    response.raise_for_status()
    run_id: str = response.json()["id"]
    return run_id


async def trivial_run(http: httpx.AsyncClient, target: Target) -> None:
    """One run of the runs/s workload: POST, its stream to its end, then a GET."""
    run_id = await start(http, "trivial")
    stream = await Stream.open(target, run_id)
    try:
        await stream.count_to_end()
    finally:
        stream.close()
    status = (await http.get(f"/v1/runs/{run_id}")).json()["status"]
    assert status in TERMINAL_STATUS, status


# the workloads: each returns its figures for one repetition


Bench = Callable[[httpx.AsyncClient, Target], Awaitable[dict[str, float]]]


async def first_event(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    samples = []
    for _ in range(30):
        began = time.perf_counter()
        run_id = await start(http, "trivial")
        stream = await Stream.open(target, run_id)
        await stream.until(b"event: bench.hello")
        samples.append(time.perf_counter() - began)
        stream.close()
    return {"start -> first agent event ms": statistics.median(samples) * 1000}


async def runs_per_second(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    total, width = 200, 20
    gate = asyncio.Semaphore(width)

    async def one() -> None:
        async with gate:
            await trivial_run(http, target)

    cpu = target.cpu() if target.pid else 0.0
    began = time.perf_counter()
    async with asyncio.timeout(120):
        await asyncio.gather(*(one() for _ in range(total)))
    elapsed = time.perf_counter() - began
    figures = {"runs/s (stream to end, then GET)": total / elapsed}
    if target.pid:
        figures["server CPU ms per run"] = (target.cpu() - cpu) / total * 1000
    return figures


async def stream_one(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    events = 5_000
    began = time.perf_counter()
    run_id = await start(http, "burst", events)
    stream = await Stream.open(target, run_id)
    async with asyncio.timeout(120):
        count = await stream.count_to_end()
    elapsed = time.perf_counter() - began
    stream.close()
    assert count >= events, count
    return {"5,000 events: POST -> last event ms": elapsed * 1000}


async def stream_ten(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    events, clients = 5_000, 10
    began = time.perf_counter()
    run_id = await start(http, "burst", events)
    streams = await asyncio.gather(*(Stream.open(target, run_id) for _ in range(clients)))

    async def drain(stream: Stream) -> tuple[int, float]:
        count = await stream.count_to_end()
        stream.close()
        return count, time.perf_counter()

    async with asyncio.timeout(120):
        results = await asyncio.gather(*(drain(s) for s in streams))
    rates = sorted(count / (end - began) for count, end in results)
    return {"10 clients: events/s each": statistics.median(rates)}


async def cancel_latency(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    runs = [await start(http, "waiter") for _ in range(20)]
    streams = [await Stream.open(target, run_id) for run_id in runs]
    async with asyncio.timeout(30):
        for stream in streams:
            await stream.until(b"event: run.started")
    samples = []
    for run_id in runs:
        began = time.perf_counter()
        (await http.post(f"/v1/runs/{run_id}/cancel")).raise_for_status()
        async with asyncio.timeout(30):
            while (await http.get(f"/v1/runs/{run_id}")).json()["status"] not in TERMINAL_STATUS:
                pass
        samples.append(time.perf_counter() - began)
    for stream in streams:
        stream.close()
    return {"cancel -> terminal status ms": statistics.median(samples) * 1000}


async def memory_per_run(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    runs = 500
    if not target.pid:
        return {}
    before = target.rss()
    started: list[str] = []
    for _ in range(runs // 25):
        started += await asyncio.gather(*(start(http, "waiter") for _ in range(25)))
    stream = await Stream.open(target, started[-1])
    await stream.until(b"event: run.started")
    stream.close()
    after = target.rss()
    for run_id in started:
        await http.post(f"/v1/runs/{run_id}/cancel")
    return {"KB per waiting run": (after - before) / runs / 1024}


async def delivery_delay(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    n = 2_000
    run_id = await start(http, "paced", {"n": n, "rate": 1_000})
    stream = await Stream.open(target, run_id)
    delays: list[float] = []
    buffer = b""
    async with asyncio.timeout(60):
        while len(delays) < n:
            data = await stream.chunk()
            now = time.time()
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data: ") and b'"bench.tick"' in line:
                    delays.append(now - orjson.loads(line[6:])["data"]["t"])
    stream.close()
    delays.sort()
    return {
        "emit -> client p50 ms (1,000 ev/s)": delays[len(delays) // 2] * 1000,
        "emit -> client p99 ms (1,000 ev/s)": delays[int(len(delays) * 0.99)] * 1000,
    }


async def idle_streams(http: httpx.AsyncClient, target: Target) -> dict[str, float]:
    if not target.pid:
        return {}
    run_id = await start(http, "waiter")
    first = await Stream.open(target, run_id)
    await first.until(b"event: run.started")
    streams: list[Stream] = [first]
    async with asyncio.timeout(120):
        for _ in range(10):
            streams += await asyncio.gather(
                *(Stream.open(target, run_id, after=2) for _ in range(100))
            )
    await asyncio.sleep(1)  # let the opening settle
    cpu, began = target.cpu(), time.perf_counter()
    await asyncio.sleep(5)
    share = (target.cpu() - cpu) / (time.perf_counter() - began)
    for stream in streams:
        stream.close()
    await http.post(f"/v1/runs/{run_id}/cancel")
    return {"1,000 idle streams: server CPU % of a core": share * 100}


BENCHES: dict[str, Bench] = {
    "start": first_event,
    "runs": runs_per_second,
    "stream": stream_one,
    "stream10": stream_ten,
    "cancel": cancel_latency,
    "memory": memory_per_run,
    "delay": delivery_delay,
    "idle": idle_streams,
}
ONLY_CULM = {"delay", "idle"}  # rows the ceiling has no column for


async def once(bench: Bench, target: Target) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=target.url, timeout=60, limits=LIMITS) as http:
        for _ in range(2):  # warm up
            await trivial_run(http, target)
        return await bench(http, target)


def measure(name: str, servers: list[str], repeat: int, url: str | None, pid: int | None) -> None:
    figures: dict[tuple[str, str], list[float]] = {}
    for rep in range(repeat):
        order = servers if rep % 2 == 0 else servers[::-1]
        for kind in order:
            if name in ONLY_CULM and kind == "ceiling":
                continue
            with tempfile.TemporaryDirectory() as directory:
                target = Target("url", url, pid) if kind == "url" else launch(kind, Path(directory))
                try:
                    for key, value in asyncio.run(once(BENCHES[name], target)).items():
                        figures.setdefault((key, kind), []).append(value)
                finally:
                    target.stop()
    for (key, kind), values in figures.items():
        shown = ", ".join(f"{v:,.1f}" for v in values)
        print(f"  {key:<40} {kind:<8} {statistics.median(values):>10,.1f}   ({shown})", flush=True)
    for (key, kind), values in figures.items():
        ceiling = figures.get((key, "ceiling"))
        if kind == "ceiling" or not ceiling or len(ceiling) != len(values):
            continue
        # each repetition measured both servers back to back, so a slow spell of the machine
        # (it has them) moves both: the ratio within a repetition is the steadier figure
        ratios = [v / c for v, c in zip(values, ceiling, strict=True) if c]
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"  {key:<40} {kind + '/ceiling':<8} {statistics.median(ratios):>9.2f}x   ({shown})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median shown)")
    parser.add_argument("--only", nargs="*", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--servers", nargs="*", choices=["culm", "ceiling"])
    parser.add_argument("--url", help="measure a server already running at this URL")
    parser.add_argument("--pid", type=int, help="that server's process, for CPU and memory")
    parser.add_argument(
        "--compare", metavar="SRC", help="also measure culm from this source tree ('other')"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
    servers = args.servers or (["url"] if args.url else ["culm", "ceiling"])
    if args.url and args.servers:
        servers = ["url", *args.servers]
    if args.compare:
        COMPARE.append(str(Path(args.compare).resolve()))
        servers = ["other", *servers]
    print(
        f"HTTP API, SQLite synchronous=FULL, median of {args.repeat}; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, nice {os.nice(0)}"
    )
    for name in args.only:
        measure(name, servers, args.repeat, args.url, args.pid)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
