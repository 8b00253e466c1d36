"""A do-nothing server that speaks the part of culm's HTTP API the benchmarks use.

Runs live in a dict, events in a list per run, nothing is written anywhere: it is the
ceiling of the machine for the benchmarks' workloads, served through the same stack as
culm (FastAPI on uvicorn, with culm's connection limits from ``server_config``), so the
difference between the two is what culm itself costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from starlette.responses import StreamingResponse

TERMINAL = frozenset({"run.completed", "run.failed", "run.cancelled"})


class Run:
    """One run: its encoded events, its status, and who waits for its next event."""

    __slots__ = ("agent", "events", "id", "status", "task", "waiters")

    def __init__(self, run_id: str, agent: str) -> None:
        self.id = run_id
        self.agent = agent
        self.status = "running"
        self.events: list[bytes] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    def emit(self, type: str, data: Any) -> None:
        seq = len(self.events) + 1
        body = orjson.dumps({"seq": seq, "run_id": self.id, "type": type, "data": data})
        self.events.append(b"id: %d\nevent: %b\ndata: %b\n\n" % (seq, type.encode(), body))
        if type in TERMINAL:
            self.status = type.removeprefix("run.")
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "agent": self.agent, "status": self.status}


async def _agent(run: Run, input: Any) -> None:
    run.emit("run.started", {})
    if run.agent == "trivial":
        run.emit("bench.hello", {})
    elif run.agent == "burst":
        for i in range(int(input)):
            run.emit("bench.tick", {"i": i})
            if i % 64 == 63:
                await asyncio.sleep(0)
    elif run.agent == "paced":
        began = time.monotonic()
        for i in range(int(input["n"])):
            late = began + i / input["rate"] - time.monotonic()
            if late > 0:
                await asyncio.sleep(late)
            run.emit("bench.tick", {"i": i, "t": time.time()})
    elif run.agent == "waiter":
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            run.emit("run.cancelled", {})
            return
    run.emit("run.completed", {})


def create_app() -> FastAPI:
    api = FastAPI()
    runs: dict[str, Run] = {}
    counter = iter(range(1, 2**62))

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/v1/runs", status_code=201)
    async def start(request: Request) -> Response:
        body = orjson.loads(await request.body())
        run = Run(f"run_{next(counter)}", body["agent"])
        runs[run.id] = run
        run.emit("run.queued", {"agent": run.agent})
        run.task = asyncio.get_running_loop().create_task(_agent(run, body.get("input")))
        return Response(orjson.dumps(run.to_dict()), 201, media_type="application/json")

    @api.get("/v1/runs/{run_id}")
    async def get(run_id: str) -> Response:
        return Response(orjson.dumps(runs[run_id].to_dict()), media_type="application/json")

    @api.post("/v1/runs/{run_id}/cancel", status_code=202)
    async def cancel(run_id: str) -> Response:
        run = runs[run_id]
        if run.task is not None:
            run.task.cancel()
        return Response(orjson.dumps(run.to_dict()), 202, media_type="application/json")

    @api.get("/v1/runs/{run_id}/events")
    async def events(run_id: str, after: int = 0) -> StreamingResponse:
        run = runs[run_id]

        async def body() -> AsyncIterator[bytes]:
            sent = after
            while True:
                if len(run.events) > sent:
                    fresh = run.events[sent:]
                    sent += len(fresh)
                    yield b"".join(fresh)
                    if run.status != "running":
                        return
                waiter = asyncio.get_running_loop().create_future()
                run.waiters.append(waiter)
                await waiter

        return StreamingResponse(body(), media_type="text/event-stream")

    return api
