"""A run's token budget: what it has used, and whether the next call still fits.

A model call is billed for its whole prompt, which grows every round; so the budget is
checked before each call against an estimate of that prompt, and the call's completion is
capped at what is left, so no call can take the run past its budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from culm.llm.assemble import estimate_tokens
from culm.llm.base import ChatMessage, ToolSpec, Usage


@dataclass(slots=True, frozen=True)
class Budget:
    """The most a run may use: tokens (its children's included) and rounds; None is no limit.

    A run's budget is its agent's, capped by what its parent granted it, so a tree of runs
    never spends more than its root was allowed.
    """

    tokens: int | None = None
    rounds: int | None = None

    def cap(self, other: Budget) -> Budget:
        """The tighter of the two, limit by limit."""
        return Budget(_least(self.tokens, other.tokens), _least(self.rounds, other.rounds))

    def to_dict(self) -> dict[str, int | None]:
        return {"tokens": self.tokens, "rounds": self.rounds}


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


class TokenBudget:
    """Usage so far against an optional limit on total tokens."""

    __slots__ = ("_context", "_elsewhere", "limit", "used")

    def __init__(self, limit: int | None, elsewhere: Callable[[], int] | None = None) -> None:
        """``elsewhere`` counts tokens spent against the same limit by others (the run's
        children), which leave less for this run's own calls."""
        self.limit = limit
        self.used = Usage()
        self._context: tuple[int, int] | None = None  # (tokens, messages) of the last call
        self._elsewhere = elsewhere

    @property
    def left(self) -> int | None:
        """Tokens left, or None without a limit."""
        if self.limit is None:
            return None
        spent = self.used.total_tokens + (self._elsewhere() if self._elsewhere else 0)
        return max(0, self.limit - spent)

    def record(self, usage: Usage, messages_sent: int) -> None:
        """Count a finished call that was sent ``messages_sent`` messages."""
        self.used = self.used + usage
        self._context = (usage.total_tokens, messages_sent)

    def seen(self, usage: Usage, messages_sent: int) -> None:
        """A call made before the run was resumed, whose usage ``used`` already counts:
        the next estimate starts from it, as it would have had the run not been resumed."""
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
