"""The app a real ``culm serve`` runs in the kill tests: a model agent on the test's own
OpenAI-compatible server (``FAKE_OPENAI_URL``) whose tools write each real execution to a
file (``RECORD_FILE``), so a test can count what ran, whichever process ran it.

With ``HOLD_AFTER`` set to an event type, the first run to emit one stops for good once
that event is committed (and ``HOLD_FILE`` is created, once: a server started again does
not stop), so a test can kill the process at exactly that point of the run."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import culm
from culm.llm import RetryPolicy
from culm.runtime.runner import Runner

app = culm.App()


def _record(line: str) -> None:
    with open(os.environ["RECORD_FILE"], "a") as out:
        out.write(f"{line} {os.getpid()}\n")


@app.tool
def record(n: int) -> str:
    """Records that it ran."""
    _record(f"record {n}")
    return f"recorded {n}"


def _hold_after(kind: str, marker: str) -> None:
    emit = Runner.emit
    held: list[Runner] = []

    async def emit_then_hold(self: Runner, type: str, data: dict[str, Any]) -> None:
        await emit(self, type, data)
        if type == kind and not held:
            held.append(self)
            await self.flush()  # committed: the kill comes right after it
            _touch(marker)
            await asyncio.Event().wait()

    Runner.emit = emit_then_hold  # type: ignore[method-assign]


if os.environ.get("HOLD_AFTER") and not os.path.exists(os.environ["HOLD_FILE"]):
    _hold_after(os.environ["HOLD_AFTER"], os.environ["HOLD_FILE"])


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


def _runs_of(line: str) -> int:
    with open(os.environ["RECORD_FILE"]) as records:
        return sum(1 for past in records if past.startswith(line + " "))


@app.tool
async def slow_record(n: int) -> str:
    """Records that it started, then takes a minute (a tool to be killed in)."""
    _record(f"slow_record {n}")
    await asyncio.sleep(60)
    return f"slowly recorded {n}"


@app.tool(idempotent=True)
async def slow_safe_record(n: int, run: culm.RunContext) -> str:
    """Records that it started, under its idempotency key; its first execution takes a
    minute (a tool to be killed in), the next one returns at once. Safe to run again."""
    first = _runs_of(f"slow_safe_record {n}") == 0
    _record(f"slow_safe_record {n} {run.idempotency_key}")
    if first:
        await asyncio.sleep(60)
    return f"safely recorded {n}"


app.add_agent(
    "worker",
    model="openai:fake-model",
    model_settings={"api_key": "test-key", "base_url": os.environ.get("FAKE_OPENAI_URL", "")},
    tools=[record, slow_record, slow_safe_record],
    retry=RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.05),
)


@app.agent(resume=True)
async def checkout(run: culm.RunContext, input: str) -> dict[str, str]:
    """Charges, waits for ``GATE_FILE`` to exist (the process is killed meanwhile), ships."""
    charged = await run.step("charge", lambda: _record(f"charge {input}") or f"ch_{input}")
    await run.emit("shop.charged", {"charge": charged})
    while not await asyncio.to_thread(os.path.exists, os.environ["GATE_FILE"]):
        await run.sleep(0.05)
    shipped = await run.step("ship", lambda: _record(f"ship {input}") or f"parcel_{input}")
    return {"charge": charged, "parcel": shipped}


@app.agent(resume=True)
async def fickle(run: culm.RunContext, input: None = None) -> str:
    """Emits something that differs in every process, then waits for ``GATE_FILE``: resumed
    in another process, its replay does not match its log."""
    await run.emit("shop.begin", {"pid": os.getpid()})
    while not await asyncio.to_thread(os.path.exists, os.environ["GATE_FILE"]):
        await run.sleep(0.05)
    return "done"
