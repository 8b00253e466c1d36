"""The engine's calls on spawned runs: starting a child of a run executing here, and
reading a run's children and tree."""

from __future__ import annotations

from typing import Any

from culm.agent.budget import Budget
from culm.errors import Conflict, RunFinished
from culm.models import Run
from culm.runtime.executor import Executor
from culm.runtime.runner import Runner
from culm.store import RunFilter, Store
from culm.tree import RunNode, build_tree


class SpawnCalls:
    """Mixed into ``Engine``."""

    store: Store
    executor: Executor

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run:
        raise NotImplementedError

    async def list_runs(
        self, where: RunFilter | None = None, *, limit: int = 50, before: str | None = None
    ) -> list[Run]:
        raise NotImplementedError

    # spawn

    async def spawn(
        self,
        parent_run_id: str,
        agent: str,
        input: Any = None,
        *,
        tenant: str | None = None,
        by: str = "user",
        token_budget: int | None = None,
        max_rounds: int | None = None,
    ) -> Run:
        """Start ``agent`` as a child of a run executing here, as its agent's ``run.spawn``
        would: on a child session, through ``start_run`` with trigger ``spawn``, within the
        parent's limits and budget (``SpawnRefused`` otherwise). The parent's stream gets
        ``child.started`` and, when the child ends, ``child.completed``."""
        parent = await self.store.get_run(parent_run_id, tenant)
        runner = self.executor.runner(parent_run_id)
        if runner is None or runner.children is None:
            if parent.status.terminal:
                raise RunFinished(parent_run_id, parent.status.value)
            raise Conflict(f"run {parent_run_id} is not executing in this process")
        budget = Budget(token_budget, max_rounds)
        child = await runner.children.spawn(agent, input, budget, by=by)
        return await self.get_run(child.run_id)

    async def children(
        self,
        run_id: str,
        *,
        tenant: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Run]:
        """The runs the run spawned, newest first; ``before`` is the last id of a page."""
        await self.store.get_run(run_id, tenant)
        where = RunFilter(tenant=tenant, parent_run_id=run_id)
        return await self.list_runs(where, limit=limit, before=before)

    async def run_tree(self, run_id: str, tenant: str | None = None) -> RunNode:
        """The run and every run spawned below it, with their live state."""
        return build_tree(await self.store.run_tree(run_id, tenant))

    def local_runner(self, run_id: str) -> Runner | None:
        """The runner of a run this process executes, if any."""
        return self.executor.runner(run_id)
