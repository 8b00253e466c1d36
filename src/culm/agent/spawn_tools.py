"""The built-in tools that let a model agent start child agents and collect their results.

Give them to an agent by name (``tools=["spawn_agent", "wait_children"]``) or as objects
(``culm.spawn_agent``). A limit that refuses a spawn becomes a tool error the model reads;
a child that fails comes back as a result with its status and error.
"""

from __future__ import annotations

from typing import Any, Literal

from culm.agent.ask_tool import ask_user
from culm.agent.context import RunContext
from culm.agent.tools import Tool

WAIT_TIMEOUT = 24 * 3600.0
"""Waiting for children is bounded by their watchdog, not by the agent's tool timeout."""


async def _spawn_agent(
    run: RunContext, agent: str, input: Any = None, wait: bool = True
) -> dict[str, Any]:
    """Start another agent as a child run that works concurrently with you.

    With wait=true you get its result (status, output or error) when it ends. With
    wait=false you get its run_id at once; collect its result later with wait_children.

    Args:
        agent: The name of the agent to start.
        input: What to give it (for most agents, a message as a string).
        wait: Wait for its result (true), or go on and collect it later (false).
    """
    if wait:
        return (await run.spawn(agent, input, wait=True)).to_dict()
    child = await run.spawn(agent, input)
    return {**child.to_dict(), "status": "running"}


async def _wait_children(
    run: RunContext,
    run_ids: list[str] | None = None,
    mode: Literal["all", "first", "all_or_fail"] = "all",
) -> list[dict[str, Any]]:
    """Wait for child runs you started with spawn_agent and get their results.

    Args:
        run_ids: The children to wait for (default: every child you started).
        mode: all: until every one has ended; first: until one has ended (the others go
            on); all_or_fail: until every one has completed, or stop at the first that
            did not and cancel the rest.
    """
    return [r.to_dict() for r in await run.wait_children(run_ids, mode)]


# a call cut off by a crash is made again: the resumed run hands it the child it had
# started (found by the call's idempotency key) instead of starting another
spawn_agent = Tool(_spawn_agent, name="spawn_agent", timeout=WAIT_TIMEOUT, idempotent=True)
# waiting again after a restart is harmless: a wait cut off by a crash is simply redone
wait_children = Tool(_wait_children, name="wait_children", timeout=WAIT_TIMEOUT, idempotent=True)

BUILTIN_TOOLS: dict[str, Tool] = {
    tool.name: tool for tool in (spawn_agent, wait_children, ask_user)
}
"""Tools every app knows by name, unless it registers its own under the same name."""
