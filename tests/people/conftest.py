"""The fake OpenAI server, for the model agents that wait for people."""

from __future__ import annotations

from tests.fake_openai import openai_server

__all__ = ["openai_server"]
