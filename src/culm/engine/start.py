"""``Engine.start``: the one door every run goes through (HTTP, spawn, schedules, Python)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from culm import events as ev
from culm.agent.app import App
from culm.agent.budget import Budget
from culm.config import Settings
from culm.errors import InvalidInput, RunFinished, SessionBusy
from culm.events import Event
from culm.ids import new_id
from culm.models import BusyPolicy, Run, RunState, RunStatus, Session, Trigger
from culm.projection import advance
from culm.runtime.executor import Executor
from culm.runtime.runner import cancelled_data, next_event
from culm.store import Store
from culm.store.base import Created, SentMessage
from culm.store.starts import replay


def _ender(type: str, data: dict[str, Any], now: float) -> Callable[[Run], Event]:
    """How the store ends a run this call supersedes: the next event of its stream."""

    return lambda run: next_event(run, type, data, now)


@dataclass(frozen=True, slots=True)
class Started:
    """What ``Engine.start`` did: the run as stored, and whether this call created it
    (False when its idempotency key named a run started before)."""

    run: Run
    created: bool
    steered: SentMessage | None = None
    """With ``if_busy=steer`` on a busy session: the message the active run (``run``) was
    sent instead of starting a new one."""


class StartCalls:
    """Mixed into ``Engine``."""

    app: App
    settings: Settings
    store: Store
    executor: Executor
    worker_id: str
    clock: Callable[[], float]

    def _refuse_when_unhealthy(self) -> None:
        raise NotImplementedError

    def _work_queued(self) -> None:
        raise NotImplementedError

    async def cancel(
        self,
        run_id: str,
        *,
        by: str = "user",
        reason: str | None = None,
        tenant: str | None = None,
    ) -> Run:
        raise NotImplementedError

    async def send_message(
        self, run_id: str, content: str, *, tenant: str | None = None
    ) -> SentMessage:
        raise NotImplementedError

    async def start_run(
        self,
        agent: str,
        input: Any = None,
        *,
        session_id: str | None = None,
        tenant: str = "default",
        trigger: Trigger = Trigger.PYTHON,
        if_busy: BusyPolicy = BusyPolicy.REJECT,
        parent_run_id: str | None = None,
        schedule_id: str | None = None,
        idempotency_key: str | None = None,
        by: str = "user",
        run_id: str | None = None,
        grant: Budget | None = None,
        depth: int = 0,
    ) -> Run:
        """Create a run and hand it to the executor; returns at once with the run as
        stored (see ``start`` for everything it does)."""
        started = await self.start(
            agent,
            input,
            session_id=session_id,
            tenant=tenant,
            trigger=trigger,
            if_busy=if_busy,
            parent_run_id=parent_run_id,
            schedule_id=schedule_id,
            idempotency_key=idempotency_key,
            by=by,
            run_id=run_id,
            grant=grant,
            depth=depth,
        )
        return started.run

    async def start(
        self,
        agent: str,
        input: Any = None,
        *,
        session_id: str | None = None,
        tenant: str = "default",
        trigger: Trigger = Trigger.PYTHON,
        if_busy: BusyPolicy = BusyPolicy.REJECT,
        parent_run_id: str | None = None,
        schedule_id: str | None = None,
        idempotency_key: str | None = None,
        by: str = "user",
        run_id: str | None = None,
        grant: Budget | None = None,
        depth: int = 0,
    ) -> Started:
        """Create a run and hand it to the executor; returns at once.

        Without ``session_id`` the run gets a new session. When the session has an active
        run, ``if_busy`` decides: ``reject`` raises ``SessionBusy``, ``enqueue`` waits in
        line, ``interrupt`` cancels what is active (on behalf of ``by``) and then starts,
        ``steer`` sends the input to the active run as a message (``steered``) instead.
        A retried call with the same ``idempotency_key`` returns the same run
        (``created`` False), concurrent retries included; a key the tenant used for another
        agent or session raises ``IdempotencyKeyReused``. The input is checked and copied
        (``InvalidInput``, ``InvalidPayload``). ``run_id``, ``grant`` and ``depth`` are for
        spawn, which announces a child before it exists and passes what its parent
        granted it. While the database cannot be written, ``Unavailable``.
        """
        spec = self.app.get(agent)
        self._refuse_when_unhealthy()
        value = spec.validate_input(input, self.settings.payload_limits)
        if idempotency_key is not None:
            existing = await self.store.find_run(tenant, idempotency_key)
            if existing is not None:  # a retry: before any interrupt or new session
                return Started(replay(existing, agent, session_id), False)
        new_session = None
        if session_id is None:  # created with the run, in one transaction
            new_session = Session(id=new_id("ses"), tenant=tenant, created_at=self.clock())
            session_id = new_session.id
        else:
            await self.store.get_session(session_id, tenant)
            if if_busy is BusyPolicy.STEER:
                steered = await self._steer(session_id, tenant, value)
                if steered is not None:
                    return steered
        run_id = run_id or new_id("run")
        now = self.clock()
        queued = Event(
            1,
            run_id,
            session_id,
            ev.RUN_QUEUED,
            {
                "agent": agent,
                "trigger": trigger.value,
                "parent_run_id": parent_run_id,
                "schedule_id": schedule_id,
            },
            ts=now,
            parent_run_id=parent_run_id,
        )
        run = Run(
            id=run_id,
            session_id=session_id,
            tenant=tenant,
            agent=agent,
            input=value,
            trigger=trigger,
            created_at=now,
            state=advance(RunState(), queued),
            parent_run_id=parent_run_id,
            schedule_id=schedule_id,
            idempotency_key=idempotency_key,
            grant=None if grant is None else grant.to_dict(),
            depth=depth,
        )
        # the one-process default executes a start where it is made; an API process, or
        # one within limits, queues it for a claim (here or in any worker)
        claim_now = self.executor.executes and not self.executor.claims
        try:
            created = await self._create(run, queued, if_busy, claim_now, new_session, by, now)
        except SessionBusy:
            # with steer: a run started on the session meanwhile takes the message
            steered = None
            if if_busy is BusyPolicy.STEER:
                steered = await self._steer(session_id, tenant, value)
            if steered is None:
                raise
            return steered
        if not created.created:
            return Started(created.run, False)
        if claim_now and created.ahead is None:
            await self.executor.launch(created.run, epoch=created.run.epoch)
            return Started(created.run, True)
        if claim_now:
            self.executor.waits_on(session_id)
        else:
            self._work_queued()
        if created.ahead is not None and if_busy is BusyPolicy.INTERRUPT:
            # what waited was cancelled with the start; what runs is asked to stop
            with contextlib.suppress(RunFinished):
                await self.cancel(created.ahead, by=by, reason=f"interrupted by run {run_id}")
        return Started(created.run, True)

    async def _create(
        self,
        run: Run,
        queued: Event,
        if_busy: BusyPolicy,
        claim_now: bool,
        new_session: Session | None,
        by: str,
        now: float,
    ) -> Created:
        interrupted = cancelled_data(by, f"interrupted by run {run.id}", forced=False)
        return await self.store.create_run(
            run,
            queued,
            reject_if_busy=if_busy in (BusyPolicy.REJECT, BusyPolicy.STEER),
            owner=self.worker_id,
            lease_seconds=self.settings.lease_seconds,
            claim=claim_now,
            new_session=new_session,
            supersede=_ender(ev.RUN_CANCELLED, interrupted, now)
            if if_busy is BusyPolicy.INTERRUPT
            else None,
        )

    async def _steer(self, session_id: str, tenant: str, content: Any) -> Started | None:
        """Send ``content`` to the session's active run (the one running or waiting, else
        the first in line); None when the session is free."""
        active = await self.store.active_runs(session_id)
        if not active:
            return None
        if not isinstance(content, str) or not content.strip():
            raise InvalidInput("if_busy=steer sends the input as a message: it must be text")
        target = next((r for r in active if r.status is not RunStatus.PENDING), active[0])
        sent = await self.send_message(target.id, content, tenant=tenant)
        return Started(target, False, sent)
