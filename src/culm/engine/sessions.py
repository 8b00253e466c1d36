"""The engine's calls on sessions and their event streams: what a session holds, and how
its runs' events (and those of the runs spawned from them) are read and followed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from culm import events as ev
from culm.bus import Bus
from culm.config import Settings
from culm.errors import InvalidInput
from culm.events import Event
from culm.ids import new_id
from culm.models import Message, Run, Session
from culm.payload import check
from culm.runtime.follow import EventReader, follow_run, follow_sessions
from culm.runtime.recent import RecentEvents
from culm.store import Store


def _announces_child(event: Event) -> bool:
    return event.type == ev.CHILD_STARTED


class SessionCalls:
    """Mixed into ``Engine``."""

    store: Store
    settings: Settings
    bus: Bus
    recent: RecentEvents | None
    _reads: EventReader
    clock: Callable[[], float]

    def _refuse_when_unhealthy(self) -> None:
        raise NotImplementedError

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run:
        raise NotImplementedError

    # sessions

    async def create_session(
        self,
        *,
        tenant: str = "default",
        metadata: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> Session:
        self._refuse_when_unhealthy()
        limits = self.settings.payload_limits
        session = Session(
            id=new_id("ses"),
            tenant=tenant,
            created_at=self.clock(),
            metadata=check(dict(metadata or {}), limits, what="the session's metadata"),
            parent_id=parent_id,
        )
        await self.store.create_session(session)
        return session

    async def get_session(self, session_id: str, tenant: str | None = None) -> Session:
        return await self.store.get_session(session_id, tenant)

    async def list_sessions(
        self,
        tenant: str = "default",
        *,
        limit: int = 50,
        before: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Session]:
        """Newest first; ``before`` is the last id of the previous page."""
        return await self.store.list_sessions(tenant, limit=limit, before=before, metadata=metadata)

    async def delete_session(self, session_id: str, tenant: str | None = None) -> None:
        """Delete a session with its child sessions, runs, events and messages.

        Refused with ``Conflict`` while any of them has an active run.
        """
        await self.store.delete_session(session_id, tenant)
        if self.recent is not None:
            self.recent.clear()

    async def messages(
        self, session_id: str, *, tenant: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[Message]:
        """The session's conversation history, oldest first."""
        await self.store.get_session(session_id, tenant)
        return await self.store.read_messages(session_id, after=after, limit=limit)

    # events

    async def events(
        self, run_id: str, *, after: int = 0, limit: int = 1000, tenant: str | None = None
    ) -> list[Event]:
        """One page of the run's stored events with ``seq > after`` (for polling clients).

        Never behind the run read first: memory of recent events may lag a commit made by
        another process by a moment, and a client that saw the run ended must find its end
        here, so a short page from memory is read again from the log."""
        run = await self.store.get_run(run_id, tenant)
        page = await self._reads.read_events(run_id, after=after, limit=limit)
        last = page[-1].seq if page else after
        if self._reads is not self.store and len(page) < limit and last < run.state.last_seq:
            page = await self.store.read_events(run_id, after=after, limit=limit)
        return page

    async def session_events(
        self, session_id: str, *, after: int = 0, limit: int = 1000, tenant: str | None = None
    ) -> list[Event]:
        """One page of the stored events of a session and its child sessions (the runs
        spawned from it, theirs...) with log position ``pos > after``."""
        await self.store.get_session(session_id, tenant)
        tree = await self.store.session_tree(session_id)
        return await self.store.read_session_events(tree, after=after, limit=limit)

    async def subscribe_batches(
        self, run_id: str, after: int = 0, *, tenant: str | None = None
    ) -> AsyncIterator[list[Event]]:
        """The run's events after ``after`` in batches; see ``subscribe``.

        Raises ``NotFound`` for an unknown run (or another tenant's) and ``InvalidInput``
        for a cursor past the run's last event, before yielding. A cursor at the end of a
        run that has ended yields nothing.
        """
        run = await self.get_run(run_id, tenant)
        async for batch in self.follow(run, after):
            yield batch

    async def follow(self, run: Run, after: int = 0) -> AsyncIterator[list[Event]]:
        """``subscribe_batches`` for a run the caller has just read (and checked the tenant
        of): the HTTP stream reads the run once, not twice."""
        if after >= run.state.last_seq and run.status.terminal:
            return
        if after > run.state.last_seq:
            raise InvalidInput(
                f"run {run.id} has no event {after} yet (its last is {run.state.last_seq})"
            )
        async for batch in follow_run(
            self._reads,
            self.bus,
            run.id,
            after,
            buffer=self.settings.subscriber_buffer,
            idle_poll=None,  # woken by the bus only: the log's tail covers other writers
            page_bytes=self.settings.max_page_bytes,
            event_bytes=self.settings.max_event_bytes,
        ):
            yield batch

    async def subscribe(
        self, run_id: str, after: int = 0, *, tenant: str | None = None
    ) -> AsyncIterator[Event]:
        """Every event of the run after sequence number ``after``, each once and in order,
        then the live tail; ends after the terminal event."""
        async for batch in self.subscribe_batches(run_id, after, tenant=tenant):
            for event in batch:
                yield event

    async def subscribe_session(
        self, session_id: str, after: int = 0, *, tenant: str | None = None
    ) -> AsyncIterator[list[Event]]:
        """Batches of every event of a session's runs and of the runs spawned from them (on
        child sessions, theirs too...) after log position ``after``, in log order, without
        end (the session may get more runs). The tree is followed as it grows: each
        ``child.started`` is committed before the child's first event."""
        await self.store.get_session(session_id, tenant)

        async def ids() -> list[str]:
            return await self.store.session_tree(session_id)

        async for batch in follow_sessions(
            self.store,
            self.bus,
            ids,
            after,
            buffer=self.settings.subscriber_buffer,
            idle_poll=None,  # woken by the bus only: the log's tail covers other writers
            grows=_announces_child,
            page_bytes=self.settings.max_page_bytes,
            event_bytes=self.settings.max_event_bytes,
        ):
            yield batch

    async def session_tree(self, session_id: str) -> list[str]:
        """The session's id and those of the sessions below it (spawned runs'), level by
        level."""
        return await self.store.session_tree(session_id)
