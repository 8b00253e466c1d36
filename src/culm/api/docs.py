"""The OpenAPI document and its two readers, Swagger UI (``/docs``) and ReDoc (``/redoc``),
served from this server alone: their scripts and styles come from the installed
``fastapi-offline`` package, never from a CDN, so the pages work without internet.

With API keys configured all of it needs a key, like every route but ``/healthz``: the
document names the agents and their input schemas. A browser opening a page cannot send an
``Authorization`` header, so the two pages (and their assets) also take the key as
``?api_key=KEY``; the page's own script then sends it as a header, to fetch the document
and on every "Try it out" request. ``/openapi.json`` takes the key as a header only.
"""

from __future__ import annotations

import html
import importlib.resources
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.exceptions import HTTPException

from culm.api.auth import BEARER, X_API_KEY, SettingsDep, get_tenant, tenant_for
from culm.api.wire import dumps

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
"""The files the pages load, by name, and their media types; nothing else is served."""

_STATIC = importlib.resources.files("fastapi_offline") / "static"
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

router = APIRouter(include_in_schema=False)


async def _page_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(X_API_KEY)],
    query_key: Annotated[str | None, Query(alias="api_key", max_length=1024)] = None,
) -> str | None:
    """The key a docs page was opened with (header or ``?api_key=``), checked; None when no
    keys are configured. 401 otherwise."""
    if not settings.api_keys:
        return None
    presented = bearer.credentials if bearer is not None else api_key or query_key
    if tenant_for(settings.api_keys, presented) is None:
        message = (
            "an API key is required: open this page as ?api_key=KEY"
            if presented is None
            else "the API key is not valid"
        )
        raise HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})
    return presented


PageKey = Annotated[str | None, Depends(_page_key)]


@router.get("/openapi.json", dependencies=[Depends(get_tenant)])
async def openapi(request: Request) -> Response:
    """The OpenAPI document (a key, as a header, when keys are configured)."""
    state = request.app.state
    body: bytes | None = getattr(state, "openapi_json", None)
    if body is None:
        body = state.openapi_json = dumps(request.app.openapi())
    return Response(body, media_type="application/json")


@router.get("/docs/assets/{name}")
async def asset(name: str, key: PageKey) -> Response:
    """One of the pages' scripts, styles or icon, from the installed package."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no asset {name}")
    content = (_STATIC / name).read_bytes()
    return Response(
        content, media_type=media_type, headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get("/docs")
async def swagger_ui(request: Request, key: PageKey) -> Response:
    """Swagger UI over this server's OpenAPI document."""
    return _page(request, key, "Swagger UI", _SWAGGER)


@router.get("/redoc")
async def redoc(request: Request, key: PageKey) -> Response:
    """ReDoc over this server's OpenAPI document."""
    return _page(request, key, "ReDoc", _REDOC)


def _page(request: Request, key: str | None, title: str, template: str) -> Response:
    root = request.scope.get("root_path", "")
    query = f"?api_key={quote(key, safe='')}" if key else ""
    fields = {
        "title": html.escape(f"{request.app.title} - {title}"),
        "assets": html.escape(f"{root}/docs/assets"),
        "query": html.escape(query),
        # inside a script: a JS string literal, not HTML
        "openapi": dumps(f"{root}/openapi.json").decode().replace("</", "<\\/"),
    }
    return Response(template.format(**fields), media_type="text/html", headers=_PAGE_HEADERS)


# The key is read by the page's script from its own address, never written into a script.
_KEY_JS = 'const key = new URLSearchParams(location.search).get("api_key");'

_SWAGGER = (
    """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css{query}">
<link rel="icon" href="{assets}/favicon.png{query}">
</head><body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js{query}"></script>
<script>
"""
    + _KEY_JS
    + """
SwaggerUIBundle({{
  url: {openapi},
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  requestInterceptor: (request) => {{
    if (key && !request.headers.Authorization) request.headers.Authorization = "Bearer " + key;
    return request;
  }},
}});
</script></body></html>
"""
)

_REDOC = (
    """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="{assets}/favicon.png{query}">
</head><body><div id="redoc"></div>
<script src="{assets}/redoc.standalone.js{query}"></script>
<script>
"""
    + _KEY_JS
    + """
const place = document.getElementById("redoc");
fetch({openapi}, {{headers: key ? {{Authorization: "Bearer " + key}} : {{}}}})
  .then((r) => r.json().then((body) => (r.ok ? body : Promise.reject(body.error.message))))
  .then((spec) => Redoc.init(spec, {{}}, place))
  .catch((error) => {{ place.textContent = String(error); }});
</script></body></html>
"""
)


def install(api: FastAPI) -> None:
    """Serve the document and the pages (the app must be built without FastAPI's own)."""
    api.include_router(router)
