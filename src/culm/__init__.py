"""culm: run LLM agents in the background, durably, and watch them from anywhere.

The names below are imported on first use, so ``import culm.cli`` (and ``culm --help``)
does not pay for the engine, the store and the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from culm.agent.app import AgentSpec, App, load_app
    from culm.agent.ask_tool import ask_user
    from culm.agent.budget import Budget
    from culm.agent.context import RunContext
    from culm.agent.spawn import Child, ChildResult, SpawnLimits, WaitMode
    from culm.agent.spawn_tools import spawn_agent, wait_children
    from culm.client import AsyncClient, Client
    from culm.config import Settings
    from culm.engine import Engine
    from culm.errors import (
        Conflict,
        CulmError,
        IdempotencyKeyReused,
        InvalidInput,
        InvalidPayload,
        NotFound,
        NotWaiting,
        OwnershipLost,
        RunCancelled,
        RunFinished,
        RunSuspended,
        SessionBusy,
        SpawnRefused,
        Unavailable,
    )
    from culm.events import Event
    from culm.models import (
        BusyPolicy,
        Firing,
        FiringOutcome,
        Misfire,
        Overlap,
        Run,
        RunState,
        RunStatus,
        Schedule,
        ScheduleSpec,
        Session,
        SessionMode,
        ToolPhase,
        Trigger,
    )
    from culm.store import RunFilter

_WHERE = {
    **dict.fromkeys(("AgentSpec", "App", "load_app"), "culm.agent.app"),
    "ask_user": "culm.agent.ask_tool",
    "Budget": "culm.agent.budget",
    "RunContext": "culm.agent.context",
    **dict.fromkeys(("Child", "ChildResult", "SpawnLimits", "WaitMode"), "culm.agent.spawn"),
    **dict.fromkeys(("spawn_agent", "wait_children"), "culm.agent.spawn_tools"),
    **dict.fromkeys(("AsyncClient", "Client"), "culm.client"),
    "Settings": "culm.config",
    "Engine": "culm.engine",
    **dict.fromkeys(
        (
            "Conflict",
            "CulmError",
            "IdempotencyKeyReused",
            "InvalidInput",
            "InvalidPayload",
            "NotFound",
            "NotWaiting",
            "OwnershipLost",
            "RunCancelled",
            "RunFinished",
            "RunSuspended",
            "SessionBusy",
            "SpawnRefused",
            "Unavailable",
        ),
        "culm.errors",
    ),
    "Event": "culm.events",
    **dict.fromkeys(
        (
            "BusyPolicy",
            "Firing",
            "FiringOutcome",
            "Misfire",
            "Overlap",
            "Run",
            "RunState",
            "RunStatus",
            "Schedule",
            "ScheduleSpec",
            "Session",
            "SessionMode",
            "ToolPhase",
            "Trigger",
        ),
        "culm.models",
    ),
    "RunFilter": "culm.store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'culm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "AgentSpec",
    "App",
    "AsyncClient",
    "Budget",
    "BusyPolicy",
    "Child",
    "ChildResult",
    "Client",
    "Conflict",
    "CulmError",
    "Engine",
    "Event",
    "Firing",
    "FiringOutcome",
    "IdempotencyKeyReused",
    "InvalidInput",
    "InvalidPayload",
    "Misfire",
    "NotFound",
    "NotWaiting",
    "Overlap",
    "OwnershipLost",
    "Run",
    "RunCancelled",
    "RunContext",
    "RunFilter",
    "RunFinished",
    "RunState",
    "RunStatus",
    "RunSuspended",
    "Schedule",
    "ScheduleSpec",
    "Session",
    "SessionBusy",
    "SessionMode",
    "Settings",
    "SpawnLimits",
    "SpawnRefused",
    "ToolPhase",
    "Trigger",
    "Unavailable",
    "WaitMode",
    "ask_user",
    "load_app",
    "spawn_agent",
    "wait_children",
]
__version__ = "0.1.0"
