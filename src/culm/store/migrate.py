"""Schema versions, applied by Alembic from the migrations shipped in this package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the database on ``connection`` to ``revision`` (the latest by default)."""
    config = Config()
    config.set_main_option("script_location", "culm.store:migrations")
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
