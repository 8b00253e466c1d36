"""What the client raises, in one tree; server errors come back as culm's own classes.

    CulmError
    ├── ClientError                    anything the client raises on purpose
    │   ├── ServerUnreachable          no answer: connection refused, reset, timed out
    │   └── APIError                   the server answered 4xx/5xx; .status_code, .code
    │       ├── AuthError              401/403: missing or unknown API key
    │       ├── NotFoundError          404              (also a culm.NotFound)
    │       ├── InvalidInputError      400/413/422      (also a culm.InvalidInput)
    │       └── ConflictError          409              (also a culm.Conflict)
    │           ├── SessionBusyError   session_busy     (also a culm.SessionBusy)
    │           └── RunFinishedError   run_finished     (also a culm.RunFinished)

So ``except culm.NotFound`` works the same around an engine call and a client call, and
``except culm.client.ClientError`` catches everything the client adds.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from culm.errors import Conflict, CulmError, InvalidInput, NotFound, RunFinished, SessionBusy


class ClientError(CulmError):
    """Base of every error the client raises on purpose."""

    code = "client_error"


class ServerUnreachable(ClientError):
    """The server could not be reached, or the connection broke before an answer."""

    code = "unreachable"


class APIError(ClientError):
    """The server answered with an error: ``status_code`` is the HTTP status, ``code`` the
    stable error code from the body (``{"error": {"code", "message"}}``)."""

    def __init__(self, status_code: int, code: str, message: str, body: dict[str, Any]) -> None:
        # Not super().__init__: the culm classes mixed in below take other arguments.
        CulmError.__init__(self, message)
        self.status_code = status_code
        self.code = code
        self.body = body

    def __str__(self) -> str:
        return self.message


class AuthError(APIError):
    """The API key is missing, unknown or not allowed to do this."""


class NotFoundError(APIError, NotFound):
    """No such agent, session or run (or it belongs to another tenant)."""


class InvalidInputError(APIError, InvalidInput):
    """The request was refused as malformed, invalid or too large."""


class ConflictError(APIError, Conflict):
    """The request conflicts with the current state (a session with an active run...)."""


class SessionBusyError(ConflictError, SessionBusy):
    """The session already has an active run; ``active_run_id`` names it when known."""

    def __init__(self, status_code: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(status_code, code, message, body)
        found = re.search(r"session (\S+) already has an active run (\S+?);", message)
        self.session_id = str(body.get("session_id") or (found and found[1]) or "")
        self.active_run_id = str(body.get("active_run_id") or (found and found[2]) or "")


class RunFinishedError(ConflictError, RunFinished):
    """The run already ended, so it cannot be cancelled."""

    def __init__(self, status_code: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(status_code, code, message, body)
        found = re.search(r"run (\S+) already finished with status (\w+)", message)
        self.run_id = str(body.get("run_id") or (found and found[1]) or "")
        self.status = str(body.get("status") or (found and found[2]) or "")


_BY_CODE: dict[str, type[APIError]] = {
    NotFound.code: NotFoundError,
    Conflict.code: ConflictError,
    SessionBusy.code: SessionBusyError,
    RunFinished.code: RunFinishedError,
    InvalidInput.code: InvalidInputError,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidInputError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidInputError,
    422: InvalidInputError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The error a failed response stands for; the body's code wins over the status."""
    try:
        body = response.json()
        error = body["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        error = {}
        code = f"http_{response.status_code}"
        message = f"{response.status_code} {response.reason_phrase}: {response.text[:200]}"
    cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code, APIError)
    return cls(response.status_code, code, message, error if isinstance(error, dict) else {})
