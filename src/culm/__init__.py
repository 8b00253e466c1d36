"""culm: run LLM agents in the background, durably, and watch them from anywhere."""

from __future__ import annotations

from culm.agent.app import AgentSpec, App, load_app
from culm.agent.context import RunContext
from culm.client import AsyncClient, Client
from culm.config import Settings
from culm.engine import Engine
from culm.errors import (
    Conflict,
    CulmError,
    InvalidInput,
    NotFound,
    RunCancelled,
    RunFinished,
    SessionBusy,
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
    "BusyPolicy",
    "Client",
    "Conflict",
    "CulmError",
    "Engine",
    "Event",
    "Firing",
    "FiringOutcome",
    "InvalidInput",
    "Misfire",
    "NotFound",
    "Overlap",
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
    "ToolPhase",
    "Trigger",
    "load_app",
]
__version__ = "0.1.0"
