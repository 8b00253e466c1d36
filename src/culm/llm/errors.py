"""What a model call can raise; the agent loop retries only ``TransientModelError``.

CulmError
└── ModelError                  model_error      the call failed; the run fails
    ├── TransientModelError     model_transient  connection, 429, 5xx: worth retrying
    └── ModelRequestsBlocked    model_blocked    a real model was called in a test suite
"""

from __future__ import annotations

from culm.errors import CulmError


class ModelError(CulmError):
    """A model call failed; the message is the provider's own where it gave one."""

    code = "model_error"


class TransientModelError(ModelError):
    """A failure that may pass: lost connection, rate limit, server error."""

    code = "model_transient"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the provider asked us to wait, when it said."""


class ModelRequestsBlocked(ModelError):
    """Raised instead of calling a real model while ``culm.testing`` blocks requests."""

    code = "model_blocked"
