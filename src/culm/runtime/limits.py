"""The limits a run's children live under, as pure functions the tests can table-drive:
which limits hold, and when the watchdog must look at a child again."""

from __future__ import annotations

from typing import Any

from culm.agent.spawn import SpawnLimits
from culm.config import Settings


def effective_limits(agent: SpawnLimits, settings: Settings) -> SpawnLimits:
    """The agent's limits and the engine's together: the tighter of each."""

    def least(a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else min(a, b)

    return SpawnLimits(
        max_depth=least(agent.max_depth, settings.spawn_max_depth),
        max_live_children=least(agent.max_live_children, settings.spawn_max_live_children),
        max_children=least(agent.max_children, settings.spawn_max_children),
        child_timeout=least(agent.child_timeout, settings.spawn_child_timeout),
        child_idle_timeout=least(agent.child_idle_timeout, settings.spawn_child_idle_timeout),
        agents=agent.agents,
    )


def watchdog_wait(
    limits: SpawnLimits, now: float, started_at: float, quiet_since: float | None
) -> float | None:
    """Seconds until a child started at ``started_at``, whose subtree last emitted at
    ``quiet_since`` (None: unknown), is overdue; 0 when it is; None when nothing limits it."""
    waits = []
    if limits.child_timeout is not None:
        waits.append(started_at + limits.child_timeout - now)
    if limits.child_idle_timeout is not None and quiet_since is not None:
        waits.append(max(quiet_since, started_at) + limits.child_idle_timeout - now)
    return None if not waits else max(0.0, min(waits))


def overdue_why(limits: SpawnLimits, now: float, started_at: float) -> str:
    """Which limit an overdue child passed, in words (for ``child.completed``)."""
    if limits.child_timeout is not None and now >= started_at + limits.child_timeout:
        return f"ran longer than {limits.child_timeout:g}s"
    return f"no event for {limits.child_idle_timeout:g}s"
