"""Settings, from arguments or ``CULM_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from culm.payload import Limits


class Settings(BaseSettings):
    """How an engine stores, delivers and times out; every field has a safe default."""

    model_config = SettingsConfigDict(env_prefix="CULM_", extra="ignore")

    database_url: str = "sqlite:///culm.db"
    """``sqlite:///path`` (the embedded default) or ``postgresql://...``."""
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL)$")
    """FULL survives power loss; NORMAL (in WAL) survives a process crash and commits faster."""
    pg_idle_transaction_seconds: float = Field(default=10.0, ge=0)
    """PostgreSQL ends a session of this process that stays this long inside a transaction
    without a statement (``idle_in_transaction_session_timeout``): a process frozen
    mid-transaction (SIGSTOP, a paused VM) then no longer holds the log's lock, and every
    other process's writes, until its connection dies. 0: no limit. A culm transaction
    takes milliseconds; one cut short is retried, or refused by the run's fence."""
    bus_url: str | None = None
    """How processes sharing the database tell each other of new events, cancels and work:
    ``local`` (one process), ``postgresql://...`` (LISTEN/NOTIFY) or ``redis://...``. None:
    the database's own LISTEN/NOTIFY on PostgreSQL, ``local`` on SQLite."""
    bus_interval: float = Field(default=0.002, gt=0, le=1)
    """Shortest time between two notices a process sends: commits in between share one."""
    role: str = Field(default="all", pattern="^(all|api|worker)$")
    """What this process does: ``all`` serves the API and executes runs (the one-process
    default); ``api`` executes nothing (workers claim what it starts); ``worker`` claims
    and executes runs (``culm worker``)."""
    concurrency: int | None = Field(default=None, ge=1)
    """Most runs this process executes at once; it claims more as they end. None: no limit
    (a start executes at once where it was made)."""
    tenant_max_running: int | None = Field(default=None, ge=1)
    """Most runs of one tenant running at once across all processes; its other runs wait
    in order, and never hold up another tenant's. None: no limit."""
    drain_seconds: float = Field(default=30.0, ge=0)
    """On SIGTERM a worker stops claiming and gives its runs this long to end; the runs
    still going then end ``interrupted``."""
    cancel_grace: float = Field(default=5.0, ge=0)
    """Seconds a run gets to stop at a safe point before it is cancelled outright."""
    max_resumes: int = Field(default=3, ge=0)
    """How often a run whose process died is resumed (agents that allow it) before it ends
    ``interrupted``: a run that keeps killing its process is not resumed forever. Runs
    handed back at a shutdown (a deploy) are resumed whatever this says."""
    lease_seconds: float = Field(default=30.0, gt=0)
    """A run whose process stops renewing its lease for this long is interrupted."""
    retention_seconds: float | None = Field(default=None, gt=0)
    """Delete the events of runs finished longer ago than this; None keeps them."""
    subscriber_buffer: int = Field(default=10_000, ge=1)
    """Events a live subscriber may fall behind before it continues from the log."""
    idle_poll_seconds: float = Field(default=5.0, gt=0)
    """How often the log's tail is checked for events other processes sharing the database
    committed (one query per process, however many followers), and queued runs whose turn
    came unnoticed are started."""
    input_poll_seconds: float = Field(default=5.0, gt=0)
    """How often waits for a person are checked for their ``input_timeout``: a wait ends
    at most this long after its deadline."""
    max_batch: int = Field(default=5_000, ge=1)
    """Events queued for the next group commit past which emitters wait for the disk."""
    max_queued_bytes: int = Field(default=64 * 1_048_576, ge=1_048_576)
    """Bytes of event data queued for the next group commit past which emitters wait: what
    a run can make the server hold while the disk is slow or full."""
    api_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict, repr=False)
    """API key -> tenant; from ``CULM_API_KEYS`` as ``key1=tenantA,key2=tenantB``. With none
    configured every caller is tenant ``default`` and the server binds to loopback only."""
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    """An idle event stream sends a comment line this often, so proxies keep it open."""
    max_request_bytes: int = Field(default=1_048_576, ge=1)
    """Largest request body the HTTP API accepts; larger ones get 413 and change nothing."""
    max_json_depth: int = Field(default=64, ge=1, le=200)
    """Deepest nesting of objects and arrays accepted in any JSON value: event data, run
    input and output, tool arguments and results, session metadata, request bodies."""
    max_event_bytes: int = Field(default=1_048_576, ge=1_024)
    """Largest encoded JSON of one value a run stores: an event's data, its input, its
    output. A larger one fails the call that made it (``InvalidPayload``; HTTP 422)."""
    recent_events_bytes: int = Field(default=32 * 1_048_576, ge=0)
    """Bytes of committed events an engine keeps in memory, so followers catching up on
    the same recent runs share them instead of each reading the database; 0 turns it off."""

    scheduler: bool = True
    """Fire schedules from this process (every process may: each fire time fires once)."""
    schedule_poll_seconds: float = Field(default=1.0, gt=0)
    """How often the scheduler looks for due fire times (and at once after a change)."""

    spawn_max_depth: int = Field(default=4, ge=0)
    """How many levels of children below a root run (an agent may set fewer)."""
    spawn_max_live_children: int = Field(default=16, ge=0)
    """Children one run may have active at once."""
    spawn_max_children: int = Field(default=100, ge=0)
    """Children one run may start in all."""
    spawn_child_timeout: float | None = Field(default=None, gt=0)
    """Seconds a child may run before it is cancelled with reason ``timeout``; None: no limit."""
    spawn_child_idle_timeout: float | None = Field(default=None, gt=0)
    """Seconds a child (with its own children) may emit nothing before it is cancelled with
    reason ``timeout``; None: no limit."""

    webhook_dispatcher: bool = True
    """Deliver webhooks from this process (every process may: each delivery is claimed by
    one at a time)."""
    webhook_allow_private: bool = False
    """Let webhooks reach loopback, private, link-local and other non-public addresses. Off,
    a webhook cannot be a way into the server's own network."""
    webhook_timeout: float = Field(default=10.0, gt=0)
    """Seconds one delivery attempt may take, from resolving the host to the response."""
    webhook_retry_for: float = Field(default=86_400.0, gt=0)
    """Seconds a delivery is retried for (after failures that may pass) before it fails."""
    webhook_retry_base: float = Field(default=5.0, gt=0)
    """Delay before the first retry; each later one doubles, with jitter."""
    webhook_retry_max_delay: float = Field(default=3_600.0, gt=0)
    """Longest delay between two attempts (a longer ``Retry-After`` is still honoured)."""
    webhook_concurrency: int = Field(default=16, ge=1)
    """Attempts in flight at once from this process."""
    webhook_endpoint_concurrency: int = Field(default=4, ge=1)
    """Attempts in flight at once to one endpoint, so a slow one cannot hold every slot."""
    webhook_disable_after_failures: int = Field(default=20, ge=1)
    """An endpoint is disabled after this many failed attempts in a row..."""
    webhook_disable_after_seconds: float = Field(default=86_400.0, ge=0)
    """...spread over at least this many seconds without a success."""
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    """How often the dispatcher looks for new events and due retries."""
    webhook_ledger_seconds: float = Field(default=7 * 86_400.0, gt=0)
    """Finished deliveries (and their attempts) are kept this long, then deleted."""
    webhook_max_endpoints: int = Field(default=100, ge=1)
    """Webhook endpoints one tenant may have."""
    max_page_bytes: int = Field(default=4_194_304, ge=1_024)
    """Largest JSON page the HTTP API answers with (events, runs, sessions, schedules,
    messages): a page stops early, with at least one item, and says where to continue.
    An event stream catching up reads the log in slices of about this size too."""
    max_connections: int = Field(default=4_096, ge=1)
    """Open HTTP connections the server keeps; more are answered 503 at once and closed
    (lowered to fit the process's open-file limit, which the server raises at start)."""
    max_header_bytes: int = Field(default=65_536, ge=1_024)
    """Largest request head (request line and headers); a larger one is answered 431."""
    max_url_bytes: int = Field(default=8_192, ge=256)
    """Longest request target (path and query); a longer one is answered 414."""
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """A connection must send a complete request head within this long of opening (or of
    starting its next request); otherwise it is answered 408 (or closed, if it sent nothing)."""
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    """A request body must arrive within this long of its head; otherwise 408 and closed."""
    keepalive_seconds: float = Field(default=5.0, gt=0)
    """An idle keep-alive connection is closed after this long without a new request."""
    send_timeout_seconds: float = Field(default=60.0, gt=0)
    """A client that reads nothing of a response (an event stream too) for this long,
    while the server has more to send, is disconnected."""

    @property
    def resolved_bus_url(self) -> str:
        """The bus this process uses (see ``bus_url``)."""
        if self.bus_url:
            return self.bus_url
        scheme = self.database_url.split(":", 1)[0].split("+", 1)[0]
        return self.database_url if scheme in ("postgresql", "postgres") else "local"

    @property
    def payload_limits(self) -> Limits:
        """The limits every JSON value entering culm is checked against."""
        return Limits(max_depth=self.max_json_depth, max_bytes=self.max_event_bytes)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        return parse_api_keys(value) if isinstance(value, str) else value


def parse_api_keys(text: str) -> dict[str, str]:
    """``key1=tenantA,key2=tenantB`` as a dict; an entry without a tenant is an error."""
    keys: dict[str, str] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, tenant = entry.partition("=")
        if not sep or not key.strip() or not tenant.strip():
            raise ValueError("CULM_API_KEYS entries look like key=tenant, separated by commas")
        keys[key.strip()] = tenant.strip()
    return keys
