"""The fake OpenAI server, for the resume tests' model agents."""

from __future__ import annotations

from tests.fake_openai import openai_server

__all__ = ["openai_server"]
