"""Helpers for testing applications built on culm, without a network or a real model.

    import culm.testing

    culm.testing.block_model_requests()          # in conftest.py: no real model by accident

    def test_helper(...):
        model = culm.testing.ScriptedModel(
            culm.testing.Reply(calls=[culm.testing.call("get_weather", city="Paris")]),
            "It is sunny in Paris.",
        )
        with culm.testing.override_model(app, "helper", model):
            ...                                   # runs of "helper" now use the script

A test that means to reach a real model opts in with ``with allow_model_requests():``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from culm.agent.app import App
from culm.agent.model_agent import ModelAgent
from culm.llm import guard
from culm.llm.base import Model
from culm.llm.errors import ModelRequestsBlocked
from culm.llm.scripted import Reply, ScriptedModel, call

__all__ = [
    "ModelRequestsBlocked",
    "Reply",
    "ScriptedModel",
    "allow_model_requests",
    "block_model_requests",
    "call",
    "model_requests_allowed",
    "override_model",
]


def block_model_requests(blocked: bool = True) -> None:
    """Make every request to a real model (``openai:``, ``local:``) raise
    ``ModelRequestsBlocked``; scripted models still answer. ``False`` lifts the block."""
    guard.ALLOW_MODEL_REQUESTS = not blocked


def model_requests_allowed() -> bool:
    """Whether real model requests are allowed right now."""
    return guard.ALLOW_MODEL_REQUESTS


@contextmanager
def allow_model_requests(allowed: bool = True) -> Iterator[None]:
    """Allow (or, with False, block) real model requests inside the block only."""
    before = guard.ALLOW_MODEL_REQUESTS
    guard.ALLOW_MODEL_REQUESTS = allowed
    try:
        yield
    finally:
        guard.ALLOW_MODEL_REQUESTS = before


@contextmanager
def override_model(app: App, agent: str, model: str | Model) -> Iterator[None]:
    """Run the model agent named ``agent`` on ``model`` inside the block."""
    body = app.get(agent).body
    if not isinstance(body, ModelAgent):
        raise TypeError(f"agent {agent!r} is not a model agent")
    before = body.model
    body.model = model
    try:
        yield
    finally:
        body.model = before
