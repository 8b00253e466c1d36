"""culm: run LLM agents in the background, durably, and watch them from anywhere."""

from __future__ import annotations

from culm.agent.app import AgentSpec, App, load_app
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
    OwnershipLost,
    RunCancelled,
    RunFinished,
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
    "Overlap",
    "OwnershipLost",
    "Run",
    "RunCancelled",
    "RunContext",
    "RunFilter",
    "RunFinished",
    "RunState",
    "RunStatus",
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
    "load_app",
    "spawn_agent",
    "wait_children",
]
__version__ = "0.1.0"
