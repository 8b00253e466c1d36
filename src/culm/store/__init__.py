"""Durable storage, chosen by URL; drivers are imported only for the backend in use."""

from __future__ import annotations

from culm.config import Settings
from culm.errors import InvalidInput
from culm.store.base import Ownership, RunFilter, Store
from culm.store.sql import SqlStore

__all__ = ["Ownership", "RunFilter", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store for ``settings.database_url`` (not yet opened)."""
    url = settings.database_url
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        from culm.store.sqlite import sqlite_engines

        return SqlStore(lambda: sqlite_engines(url, settings.sqlite_synchronous))
    if scheme in ("postgresql", "postgres"):
        from culm.store.postgres import postgres_engines

        return SqlStore(lambda: postgres_engines(url, settings.pg_idle_transaction_seconds))
    raise InvalidInput(
        f"unsupported database URL {url!r}; use sqlite:///path or postgresql://host/db"
    )
