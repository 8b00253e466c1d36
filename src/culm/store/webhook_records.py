"""Webhook records, plain data: endpoints, deliveries, attempts; and their table rows."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from culm.events import Event, iso


class DeliveryStatus(enum.StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"
    """Not yet accepted by the endpoint; attempted when ``next_attempt_at`` comes."""
    DELIVERED = "delivered"
    """The endpoint answered 2xx."""
    FAILED = "failed"
    """Given up: a response that retrying cannot fix, or the retry time ran out."""


@dataclass(slots=True)
class Endpoint:
    """Where a tenant's matching events are posted (or, with ``run_id``, one run's end)."""

    id: str
    tenant: str
    url: str
    secret: str = field(repr=False)
    events: list[str]
    created_at: float
    run_id: str | None = None
    after_pos: int = 0
    enabled: bool = True
    disabled_reason: str | None = None
    disabled_at: float | None = None
    consecutive_failures: int = 0
    failing_since: float | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The endpoint as the API shows it: never with its secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "run_id": self.run_id,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": iso(self.disabled_at),
            "created_at": iso(self.created_at),
            "consecutive_failures": self.consecutive_failures,
            "failing_since": iso(self.failing_since),
            "last_success_at": iso(self.last_success_at),
            "last_failure_at": iso(self.last_failure_at),
        }


@dataclass(slots=True)
class Delivery:
    """One event for one endpoint; its id is the ``webhook-id`` of every attempt."""

    id: str
    endpoint_id: str
    event_pos: int
    run_id: str
    event_type: str
    body: str = field(repr=False)
    created_at: float
    deadline: float
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    last_attempt_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "event_type": self.event_type,
            "run_id": self.run_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "next_attempt_at": iso(self.next_attempt_at)
            if self.status is DeliveryStatus.PENDING
            else None,
            "deadline": iso(self.deadline),
            "delivered_at": iso(self.delivered_at),
            "last_attempt_at": iso(self.last_attempt_at),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
        }


@dataclass(slots=True)
class Attempt:
    """One POST of a delivery: when, how long, and what came back (or what went wrong)."""

    delivery_id: str
    at: float
    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "latency_ms": round(self.latency_ms, 3),
            "status_code": self.status_code,
            "error": self.error,
            "response": self.response,
        }


@dataclass(slots=True, frozen=True)
class LoggedEvent:
    """An event read back from the log with the tenant of its run."""

    event: Event
    tenant: str


@dataclass(frozen=True, slots=True)
class Settled:
    """How an attempt went, to be written: the attempt, the delivery's new status and when
    to try it again (None: not again)."""

    attempt: Attempt
    endpoint_id: str
    status: DeliveryStatus
    next_attempt_at: float | None


def endpoint_columns(e: Endpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant": e.tenant,
        "url": e.url,
        "secret": e.secret,
        "events": orjson.dumps(e.events).decode(),
        "run_id": e.run_id,
        "after_pos": e.after_pos,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "disabled_at": e.disabled_at,
        "created_at": e.created_at,
        "consecutive_failures": e.consecutive_failures,
        "failing_since": e.failing_since,
        "last_success_at": e.last_success_at,
        "last_failure_at": e.last_failure_at,
    }


def endpoint_from_row(row: sa.Row[Any]) -> Endpoint:
    return endpoint_from(row._mapping)


def endpoint_from(m: Mapping[Any, Any]) -> Endpoint:
    return Endpoint(
        id=m["id"],
        tenant=m["tenant"],
        url=m["url"],
        secret=m["secret"],
        events=orjson.loads(m["events"]),
        created_at=m["created_at"],
        run_id=m["run_id"],
        after_pos=m["after_pos"],
        enabled=bool(m["enabled"]),
        disabled_reason=m["disabled_reason"],
        disabled_at=m["disabled_at"],
        consecutive_failures=m["consecutive_failures"],
        failing_since=m["failing_since"],
        last_success_at=m["last_success_at"],
        last_failure_at=m["last_failure_at"],
    )


def delivery_columns(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_pos": d.event_pos,
        "run_id": d.run_id,
        "event_type": d.event_type,
        "body": d.body,
        "status": d.status.value,
        "attempts": d.attempts,
        "created_at": d.created_at,
        "next_attempt_at": d.next_attempt_at,
        "deadline": d.deadline,
        "delivered_at": d.delivered_at,
        "last_attempt_at": d.last_attempt_at,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
    }


def delivery_from_row(row: sa.Row[Any]) -> Delivery:
    return Delivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_pos=row.event_pos,
        run_id=row.run_id,
        event_type=row.event_type,
        body=row.body,
        created_at=row.created_at,
        deadline=row.deadline,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
    )


def attempt_columns(a: Attempt) -> dict[str, Any]:
    return {
        "delivery_id": a.delivery_id,
        "at": a.at,
        "latency_ms": a.latency_ms,
        "status_code": a.status_code,
        "error": a.error,
        "response": a.response,
    }


def attempt_from_row(row: sa.Row[Any]) -> Attempt:
    return Attempt(
        delivery_id=row.delivery_id,
        at=row.at,
        latency_ms=row.latency_ms,
        status_code=row.status_code,
        error=row.error,
        response=row.response,
        id=row.id,
    )
