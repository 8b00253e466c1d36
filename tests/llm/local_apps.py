"""Agents on the real local model for tests that run a real server (``culm serve
tests.llm.local_apps:app``)."""

from __future__ import annotations

import culm
from culm.llm import RetryPolicy

app = culm.App()

STORY = {"max_tokens": 2000, "temperature": 0.8}

app.add_agent(
    "storyteller",
    model="local:smollm2",
    instructions="You tell very long stories.",
    model_settings=STORY,
    retry=RetryPolicy(attempts=0),  # a lost model call fails the run at once
)
app.add_agent(
    "patient_storyteller",
    model="local:smollm2",
    instructions="You tell very long stories.",
    model_settings={**STORY, "max_tokens": 64},
    retry=RetryPolicy(attempts=3, initial_delay=0.1),
)
app.add_agent("brief", model="local:smollm2", model_settings={"max_tokens": 8})


@app.agent
async def countdown(run: culm.RunContext, input: int = 5) -> str:
    """Ticks every 0.1 s without a model: untouched by the model process's death."""
    for left in range(input, 0, -1):
        await run.emit("countdown.tick", {"left": left})
        await run.sleep(0.1)
    return "liftoff"
