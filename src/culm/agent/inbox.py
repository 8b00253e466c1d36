"""Steering: messages sent to a running model agent, taken in at its next round.

A message sent to a run (``POST /v1/runs/{id}/messages``) is kept by the store until the
run takes it in: at the start of a round, after ``round.started``, as ``message.injected``
(``{id, content, round}``), and then as a user message of that round in the session's
history. It is marked taken only once both are durable; a run resumed in between finds
the ids its log already holds and does not take them twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from culm import events as ev
from culm.agent.context import RunContext
from culm.events import Event
from culm.llm.base import ChatMessage


class Sent(Protocol):
    id: int
    content: str


class Mailbox(Protocol):
    """Where a run's sent messages wait (the store, for a run of an engine)."""

    async def unread(self) -> Sequence[Sent]: ...

    async def mark(self, ids: Sequence[int]) -> None: ...


class Inbox:
    """One model run's view of its messages."""

    __slots__ = ("_box", "_run", "_taking", "seen")

    def __init__(self, run: RunContext) -> None:
        self._run = run
        self._box: Mailbox | None = run.mailbox
        self.seen: set[int] = set()
        """Ids its log already holds as ``message.injected`` (a resumed run's)."""
        self._taking: list[int] = []

    async def take(self, round: int) -> list[ChatMessage]:
        """The messages sent since the last round, announced as this ``round``'s."""
        if self._box is None:
            return []
        unread = await self._box.unread()
        self._taking = [m.id for m in unread]
        fresh = [m for m in unread if m.id not in self.seen]
        taken: list[ChatMessage] = []
        for message in fresh:
            data = {"id": message.id, "content": message.content, "round": round}
            await self._run.emit(ev.MESSAGE_INJECTED, data)
            self.seen.add(message.id)
            taken.append({"role": "user", "content": message.content})
        return taken

    async def taken(self) -> None:
        """The round that took them in is in the history: they are not taken again."""
        if self._box is not None and self._taking:
            await self._box.mark(self._taking)
            self._taking = []


def user_message(event: Event) -> ChatMessage:
    """The user message a ``message.injected`` event stands for."""
    return {"role": "user", "content": str(event.data.get("content", ""))}
