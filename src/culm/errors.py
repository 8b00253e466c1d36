"""Every error culm raises on purpose, in one tree.

    CulmError                     code
    ├── NotFound                  not_found        (404)
    ├── Conflict                  conflict         (409)
    │   ├── SessionBusy           session_busy     the session has an active run
    │   ├── RunFinished           run_finished     the run already ended
    │   ├── SpawnRefused          spawn_refused    a spawn limit (depth, children, budget)
    │   ├── IdempotencyKeyReused  idempotency_key_reused  the key started another run
    │   ├── OwnershipLost         ownership_lost   another process took the run over
    │   └── StartClashed          start_clashed    concurrent starts kept clashing: retry
    ├── InvalidInput              invalid_input    (400/422)
    │   └── InvalidPayload        invalid_payload  a value that cannot be stored as JSON
    ├── Unavailable               unavailable      (503) the database cannot be written
    └── RunCancelled              cancelled        raised inside an agent at a safe point

Each error carries a stable ``code``; the HTTP API maps the class to a status.
``RunCancelled`` is how cancellation reaches agent code: catch it to clean up, then let it
propagate. It is distinct from ``asyncio.CancelledError``, which is the hard cancel that
follows when an agent ignores the cooperative one.
"""

from __future__ import annotations


class CulmError(Exception):
    """Base of every error culm raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CulmError):
    code = "not_found"


class Conflict(CulmError):
    code = "conflict"


class SessionBusy(Conflict):
    code = "session_busy"

    def __init__(self, session_id: str, active_run_id: str) -> None:
        super().__init__(
            f"session {session_id} already has an active run {active_run_id}; "
            "wait for it, cancel it, or start with if_busy='enqueue' or 'interrupt'"
        )
        self.session_id = session_id
        self.active_run_id = active_run_id


class RunFinished(Conflict):
    code = "run_finished"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} already finished with status {status}")
        self.run_id = run_id
        self.status = status


class SpawnRefused(Conflict):
    """A run may not start this child: a limit on depth, children or budget says no.

    Raised to the spawning agent (a tool error for a model agent), never a crash.
    """

    code = "spawn_refused"


class IdempotencyKeyReused(Conflict):
    """An idempotency key the tenant already used to start a run of another agent or on
    another session."""

    code = "idempotency_key_reused"


class OwnershipLost(Conflict):
    """This process may no longer write for a run: its lease ran out and another process
    ended or took over the run (its epoch moved on)."""

    code = "ownership_lost"


class StartClashed(Conflict):
    """A start was written again and again while concurrent starts on the same session or
    idempotency key kept taking its place first: nothing was started, and a retry (with
    the same idempotency key) is safe."""

    code = "start_clashed"


class InvalidInput(CulmError):
    code = "invalid_input"


class InvalidPayload(InvalidInput):
    """A value that cannot be stored as JSON, or is past a limit; says where and why."""

    code = "invalid_payload"


class Unavailable(CulmError):
    """The database cannot be written now (disk full, gone away). Reads still work; the
    server retries by itself and recovers without a restart when the cause is fixed."""

    code = "unavailable"


class RunCancelled(CulmError):
    code = "cancelled"

    def __init__(self, by: str, reason: str | None) -> None:
        super().__init__(f"run cancelled by {by}" + (f": {reason}" if reason else ""))
        self.by = by
        self.reason = reason


class RunSuspended(CulmError):
    """The run waits for a person: its ``run.waiting`` event is written, and it stops here,
    to be taken up again (from its log) once answered. Like ``RunCancelled``: catch it
    only to clean up, then re-raise."""

    code = "waiting"

    def __init__(self, call_id: str) -> None:
        super().__init__(f"the run waits for input on {call_id}")
        self.call_id = call_id


class NotWaiting(Conflict):
    """Input was given to a run that does not wait for it (or waits on another call)."""

    code = "not_waiting"
