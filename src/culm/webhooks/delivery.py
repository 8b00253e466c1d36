"""One delivery attempt, and what follows from its outcome (the retry policy, pure).

An attempt resolves and checks the host again, connects to the address it checked, posts the
body with fresh Standard Webhooks headers (same ``webhook-id`` every time, new timestamp and
signature) and reads at most ``MAX_RESPONSE`` bytes of the answer. The whole attempt has one
deadline, so neither a slow DNS server nor a receiver that trickles its answer can hold a
slot for longer than ``webhook_timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

import culm
from culm.store.webhooks import DeliveryStatus
from culm.webhooks.address import UrlRefused, parse_url, resolve
from culm.webhooks.signing import headers

MAX_RESPONSE = 1024
"""Bytes of a response body kept in the ledger, for whoever investigates a failure."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (``Retry-After``), if it did."""
    refused: bool = False
    """The URL now reaches an address webhooks may not reach: retrying will not help."""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Connection errors, timeouts, 429 and 5xx may pass; other answers will not."""
        if self.ok or self.refused:
            return False
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


def new_client(timeout: float) -> httpx.AsyncClient:
    """The HTTP client deliveries share: no redirects (one could lead anywhere), no proxies
    from the environment (a proxy would resolve names itself), no kept-alive connections
    (each attempt connects to the address it has just checked)."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def attempt(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    *,
    allow_private: bool,
    timeout: float,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """POST ``body`` to ``url`` once, signed; never raises for what the network does."""
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    try:
        async with asyncio.timeout(timeout):
            target = await resolve(parse_url(url), allow_private=allow_private, timeout=timeout)
            signed = headers(secret, msg_id, int(clock()), body)
            request = client.build_request(
                "POST",
                target.pinned,
                content=body,
                headers={
                    "host": target.url.netloc.decode("ascii"),
                    "content-type": "application/json",
                    "user-agent": f"culm/{culm.__version__} (webhooks)",
                    **signed,
                },
                extensions={"sni_hostname": target.url.raw_host.decode("ascii")},
            )
            response = await client.send(request, stream=True)
            try:
                excerpt = await _read_some(response)
            finally:
                await response.aclose()
    except UrlRefused as exc:
        return Outcome(elapsed(), error=exc.message, refused=True)
    except TimeoutError:
        return Outcome(elapsed(), error=f"timed out after {timeout:g}s")
    except httpx.TimeoutException as exc:
        return Outcome(elapsed(), error=f"timed out: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return Outcome(elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
    except OSError as exc:
        return Outcome(elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
    return Outcome(
        elapsed(),
        status_code=response.status_code,
        response=excerpt,
        retry_after=retry_after(response.headers.get("retry-after"), clock()),
    )


async def _read_some(response: httpx.Response) -> str:
    kept = b""
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= MAX_RESPONSE:
            break
    return kept[:MAX_RESPONSE].decode("utf-8", errors="replace")


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def backoff(attempts: int, base: float, cap: float, jitter: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``base`` doubled per
    attempt up to ``cap``, scaled by ``jitter`` in [0, 1) into its upper half, so endpoints
    that failed together do not all come back at once."""
    delay = min(cap, base * 2.0 ** min(attempts - 1, 62))
    return delay * (0.5 + jitter / 2)


def next_step(
    outcome: Outcome,
    *,
    attempts: int,
    now: float,
    deadline: float,
    base: float,
    cap: float,
    jitter: float,
) -> tuple[DeliveryStatus, float | None]:
    """The delivery's status after ``attempts`` attempts ending in ``outcome``, and when to
    try again (None when not). A ``Retry-After`` is honoured, also past ``cap``; one that
    reaches past the deadline ends the delivery."""
    if outcome.ok:
        return DeliveryStatus.DELIVERED, None
    if not outcome.retryable or now >= deadline:
        return DeliveryStatus.FAILED, None
    delay = backoff(attempts, base, cap, jitter)
    if outcome.retry_after is not None:
        if now + outcome.retry_after > deadline:
            return DeliveryStatus.FAILED, None
        delay = max(delay, outcome.retry_after)
    return DeliveryStatus.PENDING, min(now + delay, deadline)
