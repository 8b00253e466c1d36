"""The switch that keeps test suites from reaching real models by accident.

Every real provider calls ``check_allowed`` before each request. ``culm.testing`` turns
the switch off for a suite and back on for the tests that mean to call a model.
"""

from __future__ import annotations

from culm.llm.errors import ModelRequestsBlocked

ALLOW_MODEL_REQUESTS = True
"""False makes every request to a real model raise ``ModelRequestsBlocked``."""


def check_allowed(model: str) -> None:
    """Raise ``ModelRequestsBlocked`` when real model requests are switched off."""
    if not ALLOW_MODEL_REQUESTS:
        raise ModelRequestsBlocked(
            f"a request to {model} was blocked: real model requests are switched off "
            "(use culm.testing.ScriptedModel, or culm.testing.allow_model_requests())"
        )
