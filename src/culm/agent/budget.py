"""A run's token budget: what it has used, and whether the next call still fits.

A model call is billed for its whole prompt, which grows every round; so the budget is
checked before each call against an estimate of that prompt, and the call's completion is
capped at what is left, so no call can take the run past its budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from culm.llm.assemble import estimate_tokens
from culm.llm.base import ChatMessage, ToolSpec, Usage


class TokenBudget:
    """Usage so far against an optional limit on total tokens."""

    __slots__ = ("_context", "limit", "used")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = Usage()
        self._context: tuple[int, int] | None = None  # (tokens, messages) of the last call

    @property
    def left(self) -> int | None:
        """Tokens left, or None without a limit."""
        return None if self.limit is None else max(0, self.limit - self.used.total_tokens)

    def record(self, usage: Usage, messages_sent: int) -> None:
        """Count a finished call that was sent ``messages_sent`` messages."""
        self.used = self.used + usage
        self._context = (usage.total_tokens, messages_sent)

    def next_prompt(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]) -> int:
        """Estimated prompt tokens of a call sending ``messages``.

        After a first call it starts from what the last call really counted (its prompt
        and its answer), adding an estimate only for the messages that came after.
        """
        if self._context is None:
            return estimate_tokens(list(messages)) + estimate_tokens([t.parameters for t in tools])
        tokens, sent = self._context
        return tokens + estimate_tokens(list(messages[sent + 1 :]))

    def allows(self, prompt: int) -> bool:
        """Whether a call with this prompt leaves room for at least one answer token."""
        left = self.left
        return left is None or prompt < left

    def completion_cap(self, prompt: int) -> int | None:
        """The most tokens the call may generate, or None without a limit."""
        left = self.left
        return None if left is None else max(1, left - prompt)
