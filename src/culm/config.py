"""Settings, from arguments or ``CULM_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """How an engine stores, delivers and times out; every field has a safe default."""

    model_config = SettingsConfigDict(env_prefix="CULM_", extra="ignore")

    database_url: str = "sqlite:///culm.db"
    """``sqlite:///path`` (the embedded default) or ``postgresql://...``."""
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL)$")
    """FULL survives power loss; NORMAL (in WAL) survives a process crash and commits faster."""
    cancel_grace: float = Field(default=5.0, ge=0)
    """Seconds a run gets to stop at a safe point before it is cancelled outright."""
    lease_seconds: float = Field(default=30.0, gt=0)
    """A run whose process stops renewing its lease for this long is interrupted."""
    retention_seconds: float | None = Field(default=None, gt=0)
    """Delete the events of runs finished longer ago than this; None keeps them."""
    subscriber_buffer: int = Field(default=10_000, ge=1)
    """Events a live subscriber may fall behind before it continues from the log."""
    idle_poll_seconds: float = Field(default=5.0, gt=0)
    """A quiet subscriber re-checks the log this often (a safety net under the bus)."""
    max_batch: int = Field(default=5_000, ge=1)
    """Most events written in one group commit."""
