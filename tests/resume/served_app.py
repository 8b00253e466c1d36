"""The app a real ``culm serve`` runs in the kill tests: a model agent on the test's own
OpenAI-compatible server (``FAKE_OPENAI_URL``) whose tools write each real execution to a
file (``RECORD_FILE``), so a test can count what ran, whichever process ran it."""

from __future__ import annotations

import asyncio
import os

import culm
from culm.llm import RetryPolicy

app = culm.App()


def _record(line: str) -> None:
    with open(os.environ["RECORD_FILE"], "a") as out:
        out.write(f"{line} {os.getpid()}\n")


@app.tool
def record(n: int) -> str:
    """Records that it ran."""
    _record(f"record {n}")
    return f"recorded {n}"


@app.tool
async def slow_record(n: int) -> str:
    """Records that it started, then takes a minute (a tool to be killed in)."""
    _record(f"slow_record {n}")
    await asyncio.sleep(60)
    return f"slowly recorded {n}"


app.add_agent(
    "worker",
    model="openai:fake-model",
    model_settings={"api_key": "test-key", "base_url": os.environ.get("FAKE_OPENAI_URL", "")},
    tools=[record, slow_record],
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
