"""Agents that spawn: each shows one way a parent uses its children.

Served over HTTP too (``CULM_TEST_APP=tests.spawn.agents:app``), so none of them depends
on the test process; ``GATES`` (in-process tests only) lets a test hold a leaf until it
says so, so the order of ends is chosen, not raced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import culm

app = culm.App()

GATES: dict[str, asyncio.Event] = {}
"""Leaves with ``{"gate": name}`` wait until ``GATES[name]`` is set."""


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


@app.agent
async def leaf(run: culm.RunContext, input: dict[str, Any]) -> Any:
    """Emits ``ticks`` ticks (``delay`` apart), waits on its gate or (``hold``) until
    cancelled, fails if ``fail`` says so, else returns ``value``."""
    for i in range(int(input.get("ticks", 1))):
        await run.emit("test.tick", {"i": i})
        if input.get("delay"):
            await run.sleep(float(input["delay"]))
    if "gate" in input:
        await run.until_cancelled(gate(input["gate"]).wait())
    if input.get("hold"):
        await run.sleep(3600)
    if input.get("fail"):
        raise RuntimeError(input["fail"])
    return input.get("value")


@app.agent
async def mid(run: culm.RunContext, input: str) -> list[Any]:
    """Starts two leaves without waiting, then waits for both."""
    first = await run.spawn("leaf", {"value": f"{input}.1", "ticks": 2})
    second = await run.spawn("leaf", {"value": f"{input}.2", "ticks": 2})
    return [r.output for r in await run.wait_children([first, second])]


@app.agent
async def root(run: culm.RunContext, input: None = None) -> dict[str, Any]:
    """Three levels (root, mid, leaf), waiting each way a parent can."""
    one = await run.spawn("mid", "m", wait=True)  # one child, its own two grandchildren
    a = await run.spawn("leaf", {"value": "a", "ticks": 3})
    b = await run.spawn("leaf", {"value": "b", "ticks": 1})
    every = await run.wait_children([a, b], "all")
    fast = await run.spawn("leaf", {"value": "fast"})
    slow = await run.spawn("leaf", {"value": "slow", "gate": f"{run.run_id}.slow"})
    first = await run.wait_children([slow, fast], "first")
    gate(f"{run.run_id}.slow").set()
    later = await run.wait_for(slow)  # collected later in the same run
    bad = await run.spawn("leaf", {"fail": "no luck"})
    stuck = await run.spawn("leaf", {"hold": True})
    unless = await run.wait_children([stuck, bad], "all_or_fail")
    return {
        "one": one.output,
        "all": [r.output for r in every],
        "first": [r.output for r in first],
        "later": later.output,
        "all_or_fail": [[r.status.value, r.error] for r in unless],
    }


@app.agent
async def chain(run: culm.RunContext, input: int) -> dict[str, Any]:
    """A line of ``input`` more levels; the last holds until cancelled. Each level waits
    for its child and returns how it ended."""
    if input <= 0:
        await run.sleep(3600)
        return {}
    child = await run.spawn("chain", input - 1, wait=True)
    return {"child": child.status.value, "error": child.error}


@app.agent
async def fan(run: culm.RunContext, input: dict[str, Any]) -> dict[str, Any]:
    """Starts ``n`` leaves with ``leaf`` as input and collects them all; a refused spawn
    is returned as data, not raised."""
    started: list[culm.Child] = []
    refused = None
    for _ in range(int(input["n"])):
        try:
            started.append(await run.spawn(input.get("agent", "leaf"), input.get("leaf", {})))
        except culm.SpawnRefused as exc:
            refused = exc.message
            break
    if input.get("release"):
        gate(input["release"]).set()
    results = await run.wait_children(started)
    return {"started": len(started), "refused": refused, "results": [r.output for r in results]}


@app.agent
async def holder(run: culm.RunContext, input: None = None) -> str:
    """Waits until cancelled, then (children or not) the run is over."""
    await run.sleep(3600)
    return "woke"


@app.agent(spawn=culm.SpawnLimits(max_depth=1))
async def shallow(run: culm.RunContext, input: int) -> str:
    """A chain that may go one level deep only: its own limit, tighter than the engine's."""
    if input <= 0:
        return "bottom"
    result = await run.spawn("shallow", input - 1, wait=True)
    return f"{result.status.value}: {result.error or result.output}"


@app.agent(spawn=culm.SpawnLimits(agents=frozenset({"leaf"})))
async def picky(run: culm.RunContext, input: str) -> str:
    """May start leaves only."""
    return str((await run.spawn(input, {"value": "ok"}, wait=True)).output)


@app.agent(spawn=culm.SpawnLimits(child_timeout=0.3))
async def impatient(run: culm.RunContext, input: dict[str, Any]) -> dict[str, Any]:
    """Waits for one child that the watchdog stops after 0.3s."""
    return (await run.spawn("leaf", input, wait=True)).to_dict()


@app.agent(spawn=culm.SpawnLimits(child_idle_timeout=1.0))
async def watchful(run: culm.RunContext, input: dict[str, Any]) -> dict[str, Any]:
    """Waits for one child that the watchdog stops once it is quiet for 1s."""
    return (await run.spawn(input.pop("agent", "leaf"), input, wait=True)).to_dict()


@app.agent
async def relay(run: culm.RunContext, input: dict[str, Any]) -> Any:
    """Waits for one leaf (so it is itself quiet while its child is busy)."""
    return (await run.spawn("leaf", input, wait=True)).output


@app.agent
async def leaver(run: culm.RunContext, input: None = None) -> str:
    """Starts a child that holds, and returns without waiting for it."""
    await run.spawn("leaf", {"hold": True})
    return "left"


@app.agent
async def dropper(run: culm.RunContext, input: None = None) -> str:
    """Starts a child that holds, then fails."""
    await run.spawn("leaf", {"hold": True})
    raise RuntimeError("dropped")
