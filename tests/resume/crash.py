"""Stopping an engine the way ``kill -9`` stops a process: nothing more is written, no run
ended, what was queued but not committed is lost; another engine then takes over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import culm
from culm.llm.base import ModelRequest, ModelResponse, TextDelta, ToolCall, Usage
from culm.runtime.owners import release_worker_id
from culm.runtime.runner import Runner
from culm.store.sql import SqlStore


async def crash(engine: culm.Engine) -> None:
    """Abandon ``engine`` mid-flight, as a kill -9 would: once the transaction in flight
    (if any) has committed, nothing more is written (what was queued is lost), no run is
    ended, and every task is dropped. The database is left as a dead process leaves it."""
    store = engine.store
    assert isinstance(store, SqlStore)
    await store._write_lock.acquire()  # held for good: no transaction starts again
    executor = engine.executor
    executor.closing = True
    drainer = store._starts._drainer
    tasks = [*executor._tasks, *([drainer] if drainer is not None else [])]
    for _ in range(3):
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=1.0)
        tasks = [t for t in tasks if not t.done()]
        if not tasks:
            break
    release_worker_id(engine.worker_id)
    for db in (store._writer, store._reader):
        if db is not None:
            await db.dispose()
    await engine.bus.close()


async def until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Stepper:
    """A model that asks for the tool ``record`` with n = 1, 2, ... ``steps``, one call per
    round, then answers: the same answer for the same conversation, so a resumed run meets
    the same model. ``hold`` makes the answer of that round stall after its first word
    until ``release`` is set (a model call to crash in)."""

    name = "stepper"

    def __init__(self, steps: int, tool: str = "record", hold: int | None = None) -> None:
        self.steps = steps
        self.tool = tool
        self.hold = hold
        self.release = asyncio.Event()
        self.requests: list[ModelRequest] = []

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Stepper]:
        yield self

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        self.requests.append(request)
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        round_ = done + 1
        words = [f"Round {round_}", " thinking", " aloud."]
        for i, word in enumerate(words):
            yield TextDelta(word)
            if i == 0 and round_ == self.hold:
                await self.release.wait()
        usage = Usage(10, 3)
        if done < self.steps:
            call = ToolCall(f"call_{round_}", self.tool, f'{{"n": {round_}}}')
            yield ModelResponse("".join(words), (call,), usage, "tool_calls")
        else:
            yield ModelResponse(f"done after {done} steps", (), usage, "stop")


def transcript(events: Sequence[culm.Event]) -> list[tuple[str, Any]]:
    """What a run did, leaving out what a resume may repeat or add: streamed text and the
    resume's own markers."""
    skipped = {"message.delta", "run.resumed", "round.restarted", "run.started", "run.queued"}
    out: list[tuple[str, Any]] = []
    for e in events:
        if e.type in skipped:
            continue
        data = {k: v for k, v in e.data.items() if k not in ("usage", "budget_left")}
        out.append((e.type, data))
    return out


@contextmanager
def stopped_after(engine: culm.Engine, seq: int) -> Iterator[asyncio.Event]:
    """Stop the runs of ``engine`` for good before their event ``seq + 1``, once their
    events up to ``seq`` are committed; the event returned is set when one has stopped.
    (Every event but the terminal one goes through ``Runner.emit``.)"""
    emit = Runner.emit
    stopped = asyncio.Event()

    async def emit_or_stop(self: Runner, type: str, data: dict[str, Any]) -> None:
        if self._log is engine.log and self.state.last_seq >= seq:
            await self.flush()
            stopped.set()
            await asyncio.Event().wait()
        await emit(self, type, data)

    Runner.emit = emit_or_stop  # type: ignore[method-assign]
    try:
        yield stopped
    finally:
        Runner.emit = emit  # type: ignore[method-assign]
