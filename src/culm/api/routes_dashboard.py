"""What the dashboard needs beyond the public API: each agent's limits (max rounds, token
budget), so the runs table can show "round 3 of 8" and "1,200 of 20,000 tokens".

Not part of the documented API: the dashboard ships with the server and changes with it.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from culm.api.auth import EngineDep, TenantDep
from culm.api.wire import JSONResponse

router = APIRouter(include_in_schema=False)


@router.get("/dashboard/api/limits", response_class=JSONResponse)
async def agent_limits(engine: EngineDep, tenant: TenantDep) -> Response:
    """``{"data": {agent: {"max_rounds", "token_budget"}}}``; null where there is no limit."""
    limits = {
        name: {"max_rounds": spec.budget.rounds, "token_budget": spec.budget.tokens}
        for name, spec in sorted(engine.app.agents.items())
    }
    return JSONResponse({"data": limits})
