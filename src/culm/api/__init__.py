"""The HTTP API (``/v1``): FastAPI routes over the engine, Server-Sent Events, API keys."""

from __future__ import annotations

from culm.api.app import create_app
from culm.api.server import serve

__all__ = ["create_app", "serve"]
