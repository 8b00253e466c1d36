"""Spawn, as an agent sees it: children, their results, the limits, and ways to wait.

An agent starts a child agent through ``RunContext.spawn`` (or the ``spawn_agent`` tool).
The child is a run of its own, on a child session, started through the engine's one door;
what the agent holds is a ``Child`` (which run) and, once it ends, a ``ChildResult``.
The engine side is behind ``Spawner``, a Protocol the runner passes into the context, so
this package never imports the engine.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from culm.agent.budget import Budget
from culm.models import RunStatus


@dataclass(slots=True, frozen=True)
class SpawnLimits:
    """Limits on the children of an agent's runs; None leaves the engine's setting.

    An agent's limit and the engine's (``Settings.spawn_*``) both hold: the tighter wins.
    """

    max_depth: int | None = None
    """How deep below the root run a child may be (the root's children are at depth 1)."""
    max_live_children: int | None = None
    """Children of one run active at the same time."""
    max_children: int | None = None
    """Children one run may start in all."""
    child_timeout: float | None = None
    """Seconds a child may run before the watchdog cancels it (reason ``timeout``)."""
    child_idle_timeout: float | None = None
    """Seconds a child (with its own children) may go without an event before the watchdog
    cancels it (reason ``timeout``)."""
    agents: frozenset[str] | None = None
    """The agents it may start; None allows every agent of the app."""


class WaitMode(enum.StrEnum):
    """How a parent waits for several children."""

    ALL = "all"
    """Until every one has ended, whatever its outcome."""
    FIRST = "first"
    """Until one has ended; the others go on and can be collected later."""
    ALL_OR_FAIL = "all_or_fail"
    """Until every one has completed, or one has not: then the rest are cancelled."""


@dataclass(slots=True, frozen=True)
class Child:
    """A child run a parent started: which run, on which session, of which agent."""

    run_id: str
    session_id: str
    agent: str

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "session_id": self.session_id, "agent": self.agent}


@dataclass(slots=True, frozen=True)
class ChildResult:
    """How a child ended: its status and output, or its error; ``usage`` is its tree's."""

    run_id: str
    session_id: str
    agent: str
    status: RunStatus
    output: Any = None
    error: str | None = None
    usage: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether the child completed (rather than failed, was cancelled or interrupted)."""
        return self.status is RunStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "session_id": self.session_id,
            "agent": self.agent,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "usage": self.usage,
        }


class Spawner(Protocol):
    """What a run needs of the engine to have children; the runtime implements it."""

    async def spawn(self, agent: str, input: Any, budget: Budget) -> Child:
        """Start a child through the engine's door; ``SpawnRefused`` when a limit says no,
        ``NotFound`` / ``InvalidInput`` for an unknown agent or bad input."""
        ...

    def outcome(self, run_id: str) -> asyncio.Future[ChildResult]:
        """The child's result, resolved once its end is on the parent's stream
        (``child.completed``); ``NotFound`` if it is not a child of this run."""
        ...

    async def cancel(self, run_id: str, reason: str) -> None:
        """Ask a child to stop; harmless if it already ended."""
        ...

    def children(self) -> list[Child]:
        """Every child started so far, in order."""
        ...

    def children_tokens(self) -> int:
        """Tokens the children's trees have used so far (they count against the parent)."""
        ...


async def wait_results(
    spawner: Spawner, children: Sequence[Child | str], mode: WaitMode
) -> list[ChildResult]:
    """Results of ``children`` as ``mode`` says, in the order given (``FIRST``: one)."""
    ids = [c.run_id if isinstance(c, Child) else c for c in children]
    futures = [spawner.outcome(run_id) for run_id in ids]
    if not futures:
        return []
    if mode is WaitMode.FIRST:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        return [next(f.result() for f in futures if f.done())]
    if mode is WaitMode.ALL_OR_FAIL:
        pending = set(futures)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failed = next((f.result() for f in done if not f.result().ok), None)
            if failed is not None and pending:
                reason = f"its sibling {failed.run_id} ended {failed.status.value}"
                for run_id, future in zip(ids, futures, strict=True):
                    if future in pending:
                        await spawner.cancel(run_id, reason)
                break
    await asyncio.wait(futures)
    return [f.result() for f in futures]
