"""The executing half of an engine: claims runs, holds their runners, keeps their leases,
recovers the runs of dead processes (``recovery.py``) and stops everything at shutdown
(``shutdown.py``).

Ownership is fenced: a runner writes only under the epoch of its claim (see
``culm.store.runs``). When the log or a lease renewal reports that another process ended
or took over a run, its runner here stops and writes nothing more; when the database
refuses a run's events, that run alone ends ``failed`` and every other run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from culm import events as ev
from culm.agent.app import App
from culm.agent.budget import Budget
from culm.agent.journal import Journal
from culm.config import Settings
from culm.errors import CulmError
from culm.events import Event
from culm.models import Run, RunStatus
from culm.runtime.children import SpawnDoor
from culm.runtime.log import EventLog
from culm.runtime.recovery import Recovery, all_events
from culm.runtime.runner import Runner, cancelled_data, next_event
from culm.runtime.shutdown import SHUTDOWN, Shutdown
from culm.store import Store
from culm.store.base import Fence

log = logging.getLogger("culm.executor")

ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})
PENDING = frozenset({RunStatus.PENDING})
WAITING = frozenset({RunStatus.WAITING})
CLAIM_BATCH = 100
"""Most runs claimed in one transaction."""


class Executor(Recovery, Shutdown):
    """Runs claimed by this process (``worker_id``), and the tasks that serve them."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        event_log: EventLog,
        worker_id: str,
        door: SpawnDoor,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = event_log
        self.worker_id = worker_id
        self._door = door
        self._runners: dict[str, Runner] = {}
        self._waiting: set[str] = set()
        """Sessions with runs queued here: their next run starts when the active one ends."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.draining = False
        """Set when the process stops taking work (SIGTERM): runs going on may finish."""
        self.executes = settings.role != "api"
        """False in an API process: it starts runs for workers to claim and runs none."""
        self.claims = self.executes and (
            settings.role == "worker"
            or settings.concurrency is not None
            or settings.tenant_max_running is not None
        )
        """True when runs are taken only by claiming queued ones, within this process's
        concurrency and the tenants' limits; False when a start here executes its run at
        once (the one-process default)."""
        self._wake_claims = asyncio.Event()
        self.claimed = 0
        """Runs this process claimed from the queue since it started (for metrics)."""
        event_log.on_lost = self._lost
        event_log.on_refused = self._refused

    @property
    def app(self) -> App:
        """The agents this process can run (the engine's, which a test may swap)."""
        return self._door.app

    def clock(self) -> float:
        """Now, by the engine's clock (which a test may swap)."""
        return self._door.clock()

    # tasks

    def background(
        self, coro: Coroutine[Any, Any, Any], *, run_id: str | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coro`` in a task this executor owns: its failure is logged (with the run it
        served), and it is cancelled, at the latest, at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, run_id))
        return task

    def _done(self, task: asyncio.Task[Any], run_id: str | None) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            where = f" (run {run_id})" if run_id else ""
            log.error("background task %s failed%s", task.get_coro(), where, exc_info=exc)

    async def every(self, seconds: float, job: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Call ``job`` every ``seconds`` until cancelled; a failure is logged, not fatal."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except CulmError as exc:
                log.warning("%s: %s", getattr(job, "__name__", job), exc.message)
            except Exception:
                log.exception("background job %s failed", getattr(job, "__name__", job))

    # runners

    def runner(self, run_id: str) -> Runner | None:
        """The runner of a run this process executes, if any."""
        return self._runners.get(run_id)

    @property
    def active(self) -> int:
        return len(self._runners)

    def running_ids(self) -> list[str]:
        """The runs this process executes now."""
        return list(self._runners)

    def waits_on(self, session_id: str) -> None:
        """A run was queued here on this busy session: start it when the session frees."""
        self._waiting.add(session_id)

    async def launch(
        self, run: Run, *, epoch: int | None = None, journal: Journal | None = None
    ) -> None:
        """Execute a run here: claimed already at ``epoch`` (by its start or its resume,
        then with its ``journal``), or claimed now."""
        earlier = self._runners.get(run.id)
        if earlier is not None and earlier.finalized and epoch is not None:
            await earlier.done.wait()  # it waits for a person and is being handed back
        elif earlier is not None:
            return
        if self.closing:
            if epoch is not None:
                claim = Fence(self.worker_id, epoch)
                await self.end(run.id, ACTIVE, ev.RUN_INTERRUPTED, {"error": SHUTDOWN}, claim)
            return
        try:
            spec = self.app.get(run.agent)
        except CulmError as exc:
            held = None if epoch is None else Fence(self.worker_id, epoch)
            await self.end(run.id, ACTIVE, ev.RUN_FAILED, {"error": exc.message}, held)
            return
        if journal is None and run.state.started_at is not None:
            # it ran before and waited for a person, who answered: it goes on from its log
            journal = Journal(await all_events(self.store, run.id), run.attempt)
        grant = Budget(**run.grant) if run.grant else Budget()
        runner = Runner(
            run,
            spec,
            self.log,
            self._on_end,
            self._door.clock,
            Fence(self.worker_id, epoch or 0),
            door=self._door,
            budget=spec.budget.cap(grant),
            depth=run.depth,
            journal=journal,
            on_suspend=self._parked,
        )
        # registered before the claim, so a cancel arriving meanwhile finds it
        self._runners[run.id] = runner
        if epoch is None:
            epoch = await self.store.claim_run(run.id, self.worker_id, self.settings.lease_seconds)
            if epoch is None:  # ended or taken meanwhile; whatever a cancel queued is fenced out
                runner.lose(quietly=True)
                return
            runner.fence = Fence(self.worker_id, epoch)
            if self.closing:  # shutdown began while we claimed it
                runner.lose(quietly=True)
                claim = runner.fence
                await self.end(run.id, ACTIVE, ev.RUN_INTERRUPTED, {"error": SHUTDOWN}, claim)
                return
        runner.task = self.background(runner.execute(), run_id=run.id)

    async def _parked(self, runner: Runner) -> None:
        """A run waits for a person: hand it back. If it was cancelled meanwhile, it ends
        cancelled now; if it was answered meanwhile, it is taken up again."""
        run_id = runner.run.id
        if await self.store.park_run(run_id, runner.fence):
            if runner.token.requested:
                data = cancelled_data(runner.token.by, runner.token.reason, forced=False)
                await self.end(run_id, WAITING, ev.RUN_CANCELLED, data)
            return
        if not self.closing and self.executes:
            self.background(self._take_up(runner), run_id=run_id)

    async def _take_up(self, runner: Runner) -> None:
        """Go on with a run answered while its runner here was handing it back."""
        await runner.done.wait()
        if self.claims:
            self.wake_claims()
        else:
            await self.start_next(runner.run.session_id)

    def _on_end(self, runner: Runner) -> None:
        if self._runners.get(runner.run.id) is runner:
            del self._runners[runner.run.id]
        if self.claims:
            self.wake_claims()  # a place is free, and the session's next run may start
            return
        session_id = runner.run.session_id
        if not self.closing and session_id in self._waiting:
            self.background(self.start_next(session_id))

    # claims

    def wake_claims(self) -> None:
        """Look for queued runs to claim now (work was queued, or a place came free)."""
        self._wake_claims.set()

    async def claim_loop(self) -> None:
        """Claim queued runs while there is room, when woken and every ``idle_poll_seconds``
        in any case (a notice of new work may be lost)."""
        while True:
            self._wake_claims.clear()
            claimed = asked = 0
            if not (self.closing or self.draining):
                room = CLAIM_BATCH
                if self.settings.concurrency is not None:
                    room = min(room, self.settings.concurrency - self.active)
                if room > 0:
                    asked = room
                    try:
                        claimed = await self.claim(room)
                    except CulmError as exc:
                        log.warning("claiming queued runs failed: %s", exc.message)
                    except Exception:  # a bug must not stop this process claiming for good
                        log.exception("claiming queued runs failed")
            if asked and claimed == asked:
                continue  # there may be more waiting
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.idle_poll_seconds):
                    await self._wake_claims.wait()

    async def claim(self, room: int) -> int:
        """Claim up to ``room`` queued runs and execute them; how many were claimed."""
        runs = await self.store.claim_pending(
            self.worker_id,
            list(self.app.agents),
            room,
            self.settings.lease_seconds,
            self.settings.tenant_max_running,
        )
        self.claimed += len(runs)
        for run in runs:
            await self.launch(run, epoch=run.epoch)
        return len(runs)

    async def start_next(self, session_id: str) -> None:
        """Start the session's first queued run if nothing runs on it now."""
        active = await self.store.active_runs(session_id)
        if not any(r.status is RunStatus.PENDING for r in active):
            self._waiting.discard(session_id)
        if active and all(r.status is RunStatus.PENDING for r in active):
            await self.launch(active[0])

    async def start_waiting(self) -> None:
        """Start pending runs whose session became free without this process noticing
        (their turn came in another process, or a process died)."""
        if not self.executes or self.claims:  # claims look for them (claim_loop)
            return
        for run in await self.store.startable_runs():
            if run.agent in self.app.agents and not self.closing:
                await self.launch(run)

    async def end(
        self,
        run_id: str,
        only_if: frozenset[RunStatus],
        type: str,
        data: dict[str, Any],
        fence: Fence | None = None,
    ) -> Run | None:
        """End a run no runner here writes for: terminal event and state in one transaction
        (with ``fence``, only while that claim still holds). None if it did not apply."""
        now = self.clock()

        def terminal(run: Run) -> Event:
            return next_event(run, type, data, now)

        result = await self.store.end_run(run_id, only_if, terminal, fence=fence)
        if result is None:
            return None
        run, _ = result
        self.ended(run)
        return run

    def ended(self, run: Run) -> None:
        """A run ended from outside any runner here: a place is free, and its session's
        next run may start."""
        if self.claims:
            self.wake_claims()
        elif not self.closing and self.executes:
            self.background(self.start_next(run.session_id))

    # cancellation

    def request_cancel(self, runner: Runner, by: str, reason: str | None) -> bool:
        """Ask a local run to stop; after the grace period it is stopped outright. False if
        someone asked already."""
        if not runner.token.request(by, reason):
            return False
        self.background(self._force_cancel(runner), run_id=runner.run.id)
        return True

    async def _force_cancel(self, runner: Runner) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runner.done.wait(), self.settings.cancel_grace)
        if runner.done.is_set():
            return
        log.warning(
            "run %s ignored cancellation for %.1fs; cancelling it outright",
            runner.run.id,
            self.settings.cancel_grace,
        )
        if runner.task is not None:
            runner.task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runner.done.wait(), 0.5)
        await runner.finish(
            ev.RUN_CANCELLED, cancelled_data(runner.token.by, runner.token.reason, forced=True)
        )

    # ownership

    def _lost(self, run_id: str) -> None:
        runner = self._runners.get(run_id)
        if runner is not None:
            runner.lose()

    def _refused(self, run_id: str, fence: Fence, why: str) -> None:
        runner = self._runners.get(run_id)
        if runner is not None and runner.fence == fence:
            runner.lose(quietly=True)
        self.background(
            self.end(run_id, ACTIVE, ev.RUN_FAILED, {"error": why}, fence), run_id=run_id
        )

    async def renew(self) -> None:
        """Extend this process's leases; stop the runs it turns out to have lost."""
        held = {rid: r.fence.epoch for rid, r in self._runners.items() if r.fence.epoch}
        lost = await self.store.renew_leases(self.worker_id, self.settings.lease_seconds, held)
        for run_id in lost:
            runner = self._runners.get(run_id)
            if runner is not None and runner.fence.epoch == held[run_id]:
                runner.lose()
