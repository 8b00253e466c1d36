"""Fixtures for the providers: the fake OpenAI server (shared with tests/agent)."""

from __future__ import annotations

from tests.fake_openai import openai_server

__all__ = ["openai_server"]
