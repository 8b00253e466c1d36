"""Fixtures for model agents: the fake OpenAI server, and apps whose agents use it."""

from __future__ import annotations

from typing import Any

import culm
from culm.llm import RetryPolicy
from tests.fake_openai import FakeOpenAI, openai_server

__all__ = ["openai_server"]  # a fixture, shared with tests/llm

FAST_RETRY = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.05)


def openai_agent(
    app: culm.App, server: FakeOpenAI, name: str = "helper", **options: Any
) -> culm.AgentSpec:
    """Add a model agent on ``openai:fake-model`` talking to ``server``."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("instructions", "You are a helpful assistant.")
    return app.add_agent(
        name,
        model="openai:fake-model",
        model_settings={"api_key": "test-key", "base_url": server.base_url},
        **options,
    )
