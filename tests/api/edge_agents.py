"""Agents for the HTTP-edge tests: any input back as output, events of a chosen size, a
run that waits until cancelled."""

from __future__ import annotations

from typing import Any

import culm

app = culm.App()


@app.agent
async def echo(run: culm.RunContext, input: Any) -> Any:
    """Returns its input, whatever it is."""
    return input


@app.agent
async def bulky(run: culm.RunContext, input: dict[str, int]) -> int:
    """Emits ``n`` events each carrying ``size`` characters of text."""
    text = "x" * input["size"]
    for i in range(input["n"]):
        await run.emit("test.bulk", {"i": i, "text": text})
    return input["n"]


@app.agent
async def waiter(run: culm.RunContext, input: Any = None) -> str:
    """Waits at a safe point until cancelled."""
    await run.sleep(3600)
    return "woke"
