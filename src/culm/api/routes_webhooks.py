"""Webhooks: endpoints of a tenant, their delivery ledger, redelivery.

Each matching event is posted to the endpoint signed per Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``); the body is the event's JSON, as event
streams carry it. The secret is shown once, in the answer to the creation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from culm.api.auth import TenantDep
from culm.api.errors import error_docs
from culm.api.pages import listing
from culm.api.wire import JSONResponse, OrjsonRoute
from culm.store.webhooks import DeliveryStatus
from culm.webhooks import Webhooks

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=OrjsonRoute)


async def get_webhooks(request: Request) -> Webhooks:
    webhooks: Webhooks = request.app.state.webhooks
    return webhooks


WebhooksDep = Annotated[Webhooks, Depends(get_webhooks)]

Secret = Annotated[
    str,
    Field(
        max_length=128,
        description="``whsec_`` + base64 of 24 to 64 random bytes; one is made when left out.",
    ),
]

_LINKS = {
    name: {"operationId": name, "parameters": {"endpoint_id": "$response.body#/id"}}
    for name in ("get_webhook", "delete_webhook", "list_deliveries")
}


# requests


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateWebhook(_Request):
    url: str = Field(max_length=2048, examples=["https://example.com/hooks/culm"])
    events: list[Annotated[str, Field(max_length=128)]] = Field(
        max_length=64, examples=[["run.completed", "run.failed"]]
    )
    """Event types (``run.completed``) or prefixes (``run.*``)."""
    secret: Secret | None = None


class DisableWebhook(_Request):
    reason: str | None = Field(default=None, max_length=2000)


class RunWebhook(_Request):
    """A run's own webhook: its terminal event is posted to ``url``."""

    url: str = Field(max_length=2048)
    secret: Secret | None = None


# responses


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    run_id: str | None
    """Set for a run's own webhook."""
    enabled: bool
    disabled_reason: str | None
    """Why it is disabled: by request, or after failing too long (how often, since when,
    the last failure)."""
    disabled_at: str | None
    created_at: str
    consecutive_failures: int
    failing_since: str | None
    last_success_at: str | None
    last_failure_at: str | None


class CreatedWebhook(Webhook):
    secret: str
    """Shown this once: keep it to verify signatures."""


class WebhookPage(BaseModel):
    data: list[Webhook]
    next_cursor: str | None


class Delivery(BaseModel):
    id: str
    """The ``webhook-id`` header of every attempt."""
    endpoint_id: str
    event_type: str
    run_id: str
    status: DeliveryStatus
    attempts: int
    created_at: str
    next_attempt_at: str | None
    deadline: str
    """Retries stop after this."""
    delivered_at: str | None
    last_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None


class Attempt(BaseModel):
    at: str
    latency_ms: float
    status_code: int | None
    error: str | None
    response: str | None
    """The start of the response body."""


class DeliveryDetail(Delivery):
    payload: str
    """The body posted, exactly as signed."""
    attempt_log: list[Attempt]


class DeliveryPage(BaseModel):
    data: list[Delivery]
    next_cursor: str | None


# routes


@router.post(
    "",
    status_code=201,
    response_class=JSONResponse,
    responses={
        201: {"model": CreatedWebhook, "links": _LINKS},
        **error_docs(400, 401, 409, 413, 422),
    },
)
async def create_webhook(body: CreateWebhook, webhooks: WebhooksDep, tenant: TenantDep) -> Response:
    """Post the tenant's events of these types to ``url`` from now on. The answer holds the
    secret, this once. A URL that is not http(s), or whose host resolves to a loopback or
    private address (unless the server allows them), is 422 ``webhook_url_refused``."""
    created = await webhooks.create(tenant, body.url, body.events, body.secret)
    return JSONResponse(created.to_dict(), status_code=201)


@router.get(
    "",
    response_class=JSONResponse,
    responses={200: {"model": WebhookPage}, **error_docs(401, 422)},
)
async def list_webhooks(
    request: Request,
    webhooks: WebhooksDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The tenant's endpoints, newest first (runs' own webhooks are not listed)."""
    return await listing(
        lambda n, before: webhooks.list_endpoints(tenant, limit=n, before=before),
        limit=limit,
        budget=request.app.state.settings.max_page_bytes,
        start=cursor,
    )


@router.get(
    "/{endpoint_id}",
    response_class=JSONResponse,
    responses={200: {"model": Webhook}, **error_docs(401, 404)},
)
async def get_webhook(endpoint_id: str, webhooks: WebhooksDep, tenant: TenantDep) -> Response:
    """The endpoint and how its deliveries are going; never its secret."""
    return JSONResponse((await webhooks.get(endpoint_id, tenant)).to_dict())


@router.delete("/{endpoint_id}", status_code=204, responses=error_docs(401, 404))
async def delete_webhook(endpoint_id: str, webhooks: WebhooksDep, tenant: TenantDep) -> Response:
    """Delete the endpoint, its pending deliveries and its ledger."""
    await webhooks.delete(endpoint_id, tenant)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/disable",
    response_class=JSONResponse,
    responses={200: {"model": Webhook}, **error_docs(400, 401, 404, 413, 422)},
)
async def disable_webhook(
    endpoint_id: str,
    webhooks: WebhooksDep,
    tenant: TenantDep,
    body: DisableWebhook | None = None,
) -> Response:
    """Stop delivering (idempotent). Events meanwhile are not queued for it; pending
    deliveries wait until it is enabled."""
    reason = body.reason if body is not None else None
    return JSONResponse((await webhooks.disable(endpoint_id, tenant, reason)).to_dict())


@router.post(
    "/{endpoint_id}/enable",
    response_class=JSONResponse,
    responses={200: {"model": Webhook}, **error_docs(401, 404)},
)
async def enable_webhook(endpoint_id: str, webhooks: WebhooksDep, tenant: TenantDep) -> Response:
    """Deliver again (idempotent), also after it was disabled for failing; its failure
    streak starts afresh."""
    return JSONResponse((await webhooks.enable(endpoint_id, tenant)).to_dict())


@router.get(
    "/{endpoint_id}/deliveries",
    response_class=JSONResponse,
    responses={200: {"model": DeliveryPage}, **error_docs(401, 404, 422)},
)
async def list_deliveries(
    endpoint_id: str,
    request: Request,
    webhooks: WebhooksDep,
    tenant: TenantDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The endpoint's ledger, newest first: each delivery, its attempts so far, the last
    status code or error."""
    return await listing(
        lambda n, before: webhooks.deliveries(
            endpoint_id, tenant, status=status, limit=n, before=before
        ),
        limit=limit,
        budget=request.app.state.settings.max_page_bytes,
        start=cursor,
    )


@router.get(
    "/{endpoint_id}/deliveries/{delivery_id}",
    response_class=JSONResponse,
    responses={200: {"model": DeliveryDetail}, **error_docs(401, 404)},
)
async def get_delivery(
    endpoint_id: str, delivery_id: str, webhooks: WebhooksDep, tenant: TenantDep
) -> Response:
    """One delivery with its payload and every attempt: when, how long, what came back."""
    delivery, attempts = await webhooks.delivery(endpoint_id, delivery_id, tenant)
    return JSONResponse(
        {
            **delivery.to_dict(),
            "payload": delivery.body,
            "attempt_log": [a.to_dict() for a in attempts],
        }
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_class=JSONResponse,
    responses={202: {"model": Delivery}, **error_docs(401, 404, 409)},
)
async def redeliver(
    endpoint_id: str, delivery_id: str, webhooks: WebhooksDep, tenant: TenantDep
) -> Response:
    """Deliver again now, with the same ``webhook-id`` and body, retried as a new delivery
    would be; 409 while the endpoint is disabled."""
    delivery = await webhooks.redeliver(endpoint_id, delivery_id, tenant)
    return JSONResponse(delivery.to_dict(), status_code=202)
