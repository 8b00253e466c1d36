"""API keys: each bound to a tenant; every route works inside the caller's tenant.

With no keys configured there is one tenant, ``default``, and no authentication (the
server then refuses to listen anywhere but loopback, see ``culm.api.server``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from culm.config import Settings
from culm.engine import Engine

DEFAULT_TENANT = "default"

BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer KEY`")
X_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: KEY`")


def tenant_for(keys: Mapping[str, str], presented: str | None) -> str | None:
    """The tenant a presented key belongs to, or None; compares in constant time per key
    so response timing does not reveal how much of a key was right."""
    if presented is None:
        return None
    found = None
    given = presented.encode()
    for key, tenant in keys.items():
        if hmac.compare_digest(key.encode(), given):
            found = tenant
    return found


# async, although they do not wait: FastAPI runs plain functions in a worker thread


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_tenant(
    settings: Annotated[Settings, Depends(get_settings)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(X_API_KEY)],
) -> str:
    """The caller's tenant; 401 when keys are configured and none of them was presented."""
    return _tenant(settings, bearer, api_key)


def _tenant(
    settings: Settings, bearer: HTTPAuthorizationCredentials | None, api_key: str | None
) -> str:
    if not settings.api_keys:
        return DEFAULT_TENANT
    presented = bearer.credentials if bearer is not None else api_key
    tenant = tenant_for(settings.api_keys, presented)
    if tenant is None:
        message = (
            "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            if presented is None
            else "the API key is not valid"
        )
        raise HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})
    return tenant


@dataclass(frozen=True, slots=True)
class Caller:
    """What a route about runs needs: the engine, and the caller's tenant."""

    engine: Engine
    tenant: str
    settings: Settings


async def get_caller(request: Request) -> Caller:
    """The engine and the caller's tenant (401 as ``get_tenant``), in one dependency.

    FastAPI solves each dependency at some cost: engine, tenant, settings and the two key
    schemes were five, ~40 µs of every request, on the routes every run takes (start, its
    events, get). Here the keys are read as the schemes read them, and a route taking
    ``CallerDep`` declares the schemes in its documentation with ``SECURED``.
    """
    state = request.app.state
    settings: Settings = state.settings
    if not settings.api_keys:
        return Caller(state.engine, DEFAULT_TENANT, settings)
    tenant = _tenant(settings, await BEARER(request), await X_API_KEY(request))
    return Caller(state.engine, tenant, settings)


SECURED: dict[str, Any] = {"security": [{BEARER.scheme_name: []}, {X_API_KEY.scheme_name: []}]}
"""``openapi_extra`` of a route taking ``CallerDep``: the security it would show had it
depended on the schemes themselves (``TenantDep``)."""

EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TenantDep = Annotated[str, Depends(get_tenant)]
CallerDep = Annotated[Caller, Depends(get_caller)]
