"""Taking over the runs of processes that died or handed them back at shutdown: resume
those whose agent allows it, end the others ``interrupted``. Mixed into the executor."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from culm import events as ev
from culm.agent.app import AgentSpec, App
from culm.agent.journal import RUN_RESUMED, Journal
from culm.config import Settings
from culm.events import Event
from culm.models import Run, RunStatus
from culm.runtime.owners import owner_is_dead
from culm.runtime.runner import cancelled_data, next_event
from culm.store import Store
from culm.store.base import CancelRequest, Fence, Ownership

log = logging.getLogger("culm.executor")

ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})


class Recovery:
    """Mixed into ``Executor``."""

    settings: Settings
    store: Store
    worker_id: str
    closing: bool
    draining: bool
    executes: bool

    @property
    def app(self) -> App:
        raise NotImplementedError

    def clock(self) -> float:
        raise NotImplementedError

    def background(self, coro: Coroutine[Any, Any, Any], *, run_id: str | None = None) -> Any:
        raise NotImplementedError

    async def end(
        self,
        run_id: str,
        only_if: frozenset[RunStatus],
        type: str,
        data: dict[str, Any],
        fence: Fence | None = None,
    ) -> Run | None:
        raise NotImplementedError

    def ended(self, run: Run) -> None:
        raise NotImplementedError

    def waits_on(self, session_id: str) -> None:
        raise NotImplementedError

    async def launch(
        self, run: Run, *, epoch: int | None = None, journal: Journal | None = None
    ) -> None:
        raise NotImplementedError

    async def recover(self) -> None:
        """Take over the runs whose process died (at once on this host, by lease, judged
        by the database's clock, elsewhere) or handed them back at its shutdown: resume
        those whose agent allows it, all in one transaction (ending ``cancelled`` those a
        cancel was asked for meanwhile), and end the others ``interrupted``."""
        if self.closing:
            return
        resumable: list[tuple[str, Fence | None]] = []
        orphans: list[tuple[Ownership, bool, bool]] = []
        for owned in await self.store.runs_owned_elsewhere(self.worker_id):
            handed = owned.worker_id is None  # handed back at a shutdown: held by nobody
            dead = owned.worker_id is not None and owner_is_dead(owned.worker_id, self.worker_id)
            if handed or dead or owned.expired:
                orphans.append((owned, handed, dead))
        # a cancel asked for while its process was dying: nobody resumes a run only to
        # cancel it, nor ends it otherwise than the user asked
        asked = await self.store.cancel_requests([owned.run_id for owned, _, _ in orphans])
        for owned, handed, dead in orphans:
            why = "the process running it died" if dead else "its process stopped responding"
            fence = None if owned.worker_id is None else Fence(owned.worker_id, owned.epoch)
            run = await self.store.get_run(owned.run_id)
            if run.status is RunStatus.WAITING:  # it died handing the run back: finish that
                if fence is not None:
                    await self.store.park_run(run.id, fence)
                continue
            request = asked.get(run.id)
            if request is not None and run.status is RunStatus.RUNNING:
                data = cancelled_data(request.by, request.reason, forced=False)
                await self.end(run.id, ACTIVE, ev.RUN_CANCELLED, data, fence)
                continue
            spec = self.app.agents.get(run.agent)
            if run.status is RunStatus.PENDING and spec is not None and spec.resume:
                # queued, never started: it keeps its place and starts in its turn
                if fence is not None:
                    await self.store.park_run(run.id, fence)
                continue
            if self._leaves(run, spec):
                continue
            if handed:
                why = "the server running it shut down"
            if run.status is RunStatus.RUNNING and spec is not None and spec.resume:
                crashes = 0 if handed else await self._crashes(run)
                if crashes < self.settings.max_resumes:
                    resumable.append((run.id, fence))
                    continue
                why = (
                    f"its process died {crashes + 1} times; it was resumed after "
                    f"{crashes} of them, the most allowed (max_resumes)"
                )
            await self.end(owned.run_id, ACTIVE, ev.RUN_INTERRUPTED, {"error": why}, fence)
        if resumable:
            await self._resume(resumable)

    async def _crashes(self, run: Run) -> int:
        """How many times the run was resumed after its process died: resumes after a
        hand-back at shutdown (or an answer) do not count against ``max_resumes``. Its
        ``attempt`` bounds that; the log is read only when the bound is not enough."""
        if run.attempt < self.settings.max_resumes:
            return run.attempt
        return sum(
            1
            for event in await all_events(self.store, run.id)
            if event.type == RUN_RESUMED and event.data.get("cause", "crash") == "crash"
        )

    def _leaves(self, run: Run, spec: AgentSpec | None) -> bool:
        """Whether a dead process's running run is left to another process: one that can
        resume it (an API process leaves every run to the workers, and so does a draining
        one, which would soon hand it back again), or that has its agent (the one-process
        default ends what it lacks)."""
        if run.status is not RunStatus.RUNNING or not (spec is None or spec.resume):
            return False
        if not self.executes or self.draining:
            return True
        return spec is None and self.settings.role != "all"

    async def _resume(self, claims: list[tuple[str, Fence | None]]) -> None:
        """Take the runs over and run each again from its log; end ``cancelled`` those a
        cancel was asked for while nobody executed them."""
        now = self.clock()
        handed = {run_id for run_id, fence in claims if fence is None}

        def resumed(stored: Run) -> Event:
            data = {
                "attempt": stored.attempt + 1,
                "after_seq": stored.state.last_seq,
                "cause": "shutdown" if stored.id in handed else "crash",
            }
            return next_event(stored, RUN_RESUMED, data, now)

        def cancelled(stored: Run, asked: CancelRequest) -> Event:
            data = cancelled_data(asked.by, asked.reason, forced=False)
            return next_event(stored, ev.RUN_CANCELLED, data, now)

        taken = await self.store.resume_runs(
            claims, self.worker_id, self.settings.lease_seconds, resumed, cancelled
        )
        for run in taken:
            if run.status.terminal:
                log.info("run %s was cancelled while nobody executed it", run.id)
                self.ended(run)
                continue
            log.info("resuming run %s (attempt %d)", run.id, run.attempt)
            self.waits_on(run.session_id)  # the dead process may have queued runs behind it
            self.background(self._relaunch(run), run_id=run.id)

    async def _relaunch(self, run: Run) -> None:
        past = await all_events(self.store, run.id)
        await self.launch(run, epoch=run.epoch, journal=Journal(past, run.attempt))


async def all_events(store: Store, run_id: str) -> list[Event]:
    events: list[Event] = []
    while True:
        page = await store.read_events(run_id, after=events[-1].seq if events else 0, limit=5000)
        events.extend(page)
        if len(page) < 5000:
            return events
