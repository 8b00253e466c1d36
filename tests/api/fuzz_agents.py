"""Agents for the schema fuzzer's server: whatever input it invents, they end quickly."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

import culm

app = culm.App()


@app.agent
async def echo(run: culm.RunContext, input: Any) -> Any:
    """Returns its input, whatever it is."""
    return input


@app.agent
async def count(run: culm.RunContext, input: Annotated[int, Field(ge=0, le=50)]) -> int:
    """Emits up to 50 ticks."""
    for i in range(input):
        await run.emit("test.tick", {"i": i})
    return input
