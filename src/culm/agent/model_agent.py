"""Agents made of a model, instructions and tools: culm's own agents.

To the engine a model agent is an ``AgentSpec`` like any function agent: the same door,
the same events. Its input is the user's message (or nothing, to go on from the history);
its output is ``{"text", "stop_reason", "rounds", "usage"}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from culm.agent.app import AgentSpec
from culm.agent.budget import Budget
from culm.agent.context import RunContext
from culm.agent.loop import LoopSettings, run_rounds
from culm.agent.spawn import SpawnLimits
from culm.agent.tools import Tool
from culm.llm.base import Model
from culm.llm.resolve import resolve_model
from culm.llm.retry import RetryPolicy


class ModelAgent:
    """The body of a model agent: its settings, and what one run of it does."""

    def __init__(
        self,
        model: str | Model,
        *,
        instructions: str = "",
        tools: Iterable[Tool] = (),
        max_rounds: int = 8,
        token_budget: int | None = None,
        timeout: float | None = None,
        tool_timeout: float = 60.0,
        tool_choice: str = "auto",
        retry: RetryPolicy | None = None,
        model_settings: Mapping[str, Any] | None = None,
        approve: Iterable[str] = (),
    ) -> None:
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        tool_map = {tool.name: tool for tool in tools}
        unknown = sorted(set(approve) - set(tool_map))
        if unknown:
            raise ValueError(f"approve names tools the agent does not have: {', '.join(unknown)}")
        if tool_choice not in ("auto", "none", "required", *tool_map):
            raise ValueError(f"tool_choice {tool_choice!r} is not a mode nor one of the tools")
        self.model = model
        """A ``provider:model`` name (resolved at the first run) or a model; replaceable."""
        self.timeout = timeout
        self.settings = LoopSettings(
            instructions=instructions,
            tools=tool_map,
            max_rounds=max_rounds,
            token_budget=token_budget,
            tool_timeout=tool_timeout,
            tool_choice=tool_choice,
            retry=retry or RetryPolicy(),
            approve=frozenset(approve),
        )
        self._model_settings = dict(model_settings or {})

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    async def __call__(self, run: RunContext, input: str | None) -> dict[str, Any]:
        """One run: the history plus ``input`` as a user message, then rounds."""
        if isinstance(self.model, str):  # resolved lazily, so no provider loads at import
            self.model = resolve_model(self.model, **self._model_settings)
        messages = await run.history.read()
        written = 0 if run.journal is None else await run.history.written()
        if input and written == 0:  # on a resume the user's message may be there already
            user = {"role": "user", "content": input}
            await run.history.append([user])
            messages.append(user)
        elif input:
            written -= 1
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline, self.model.connect() as connection:
                settings = self.limited(run.budget)
                outcome = await run_rounds(run, settings, connection, messages, written)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TimeoutError(f"the agent ran past its timeout of {self.timeout:g}s") from None
        return outcome.to_output()

    @property
    def budget(self) -> Budget:
        """What one run may use, before any cap from a parent."""
        return Budget(self.settings.token_budget, self.settings.max_rounds)

    def limited(self, budget: Budget) -> LoopSettings:
        """The loop's settings within ``budget`` (a spawned run's grant from its parent)."""
        capped = self.budget.cap(budget)
        if capped == self.budget:
            return self.settings
        return dataclasses.replace(
            self.settings,
            token_budget=capped.tokens,
            max_rounds=max(1, self.settings.max_rounds if capped.rounds is None else capped.rounds),
        )


def model_agent(
    name: str,
    model: str | Model,
    *,
    description: str | None = None,
    spawn: SpawnLimits | None = None,
    resume: bool = True,
    **options: Any,
) -> AgentSpec:
    """An ``AgentSpec`` for a model agent; ``options`` are ``ModelAgent``'s."""
    body = ModelAgent(model, **options)
    tools = list(body.settings.tools)
    return AgentSpec(
        name=name,
        body=body,
        description=description or body.settings.instructions,
        input_type=str | None,
        details={
            "kind": "model",
            "model": body.model_name,
            "tools": tools,
            "approve": sorted(_approved(body.settings)),
        },
        budget=body.budget,
        spawn=spawn or SpawnLimits(),
        resume=resume,
    )


def _approved(settings: LoopSettings) -> set[str]:
    """The tools whose calls wait for a person's approval."""
    return {n for n, t in settings.tools.items() if t.approval} | set(settings.approve)
