"""How long to wait before retrying a transient model failure: a pure function of the try."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Retry transient failures ``attempts`` times, with exponential backoff and jitter."""

    attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...).

        The provider's ``Retry-After`` wins when it gave one, capped at ``max_delay``;
        otherwise the delay doubles each time, jittered so many runs do not retry in step.
        """
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_delay))
        base = min(self.max_delay, self.initial_delay * 2.0 ** (retry - 1))
        return base * random.uniform(0.5, 1.0)
