"""How long a follower keeps reconnecting: the client's one retry policy, run by tenacity.

The budget is spent only while nothing arrives: each event received refills it, so a long
run followed through many dropped connections is never given up on, while a server that
stays away is, after ``reconnect_for`` seconds (or ``retries`` failures in a row).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from culm.llm.retry import RetryPolicy


class Reconnects:
    """The reconnect budget of one follow; ``retrying()`` gives the tenacity loop over it."""

    def __init__(
        self, retries: int | None, reconnect_for: float, backoff: float, max_backoff: float
    ) -> None:
        self.retries = retries
        self.reconnect_for = reconnect_for
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._policy = RetryPolicy(initial_delay=backoff, max_delay=max_backoff)
        self.failures = 0
        """Failed attempts since the last event."""
        self.total = 0
        self._since = time.monotonic()

    def progress(self) -> None:
        """An event arrived: the budget is whole again."""
        self.failures = 0
        self._since = time.monotonic()

    def stop(self, state: RetryCallState) -> bool:
        """Whether to give up after the attempt that just failed."""
        self.failures += 1
        self.total += 1
        if self.retries is not None and self.failures > self.retries:
            return True
        return time.monotonic() - self._since > self.reconnect_for

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: doubling from ``backoff``, jittered, capped
        (the backoff the agent loop uses between model calls)."""
        return self._policy.delay(self.failures)

    def describe(self) -> str:
        """``8 attempts over 61s``: what was tried before giving up."""
        return f"{self.total} attempts over {time.monotonic() - self._since:.0f}s"

    def retrying(self, worth_retrying: Callable[[BaseException], bool]) -> AsyncRetrying:
        """Attempts until one succeeds, a failure is not ``worth_retrying`` (raised as it
        is) or the budget is spent (``tenacity.RetryError``)."""
        return AsyncRetrying(
            retry=retry_if_exception(worth_retrying), stop=self.stop, wait=self.wait
        )
