"""Error responses become culm's own error classes, whatever the server put in them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import culm
from culm.client import errors as ce


def response(status: int, body: Any) -> httpx.Response:
    if isinstance(body, dict):
        return httpx.Response(status, json=body)
    return httpx.Response(status, text=body)


def error(http_status: int, code: str, message: str = "m", **extra: Any) -> ce.APIError:
    return ce.error_from_response(
        response(http_status, {"error": {"code": code, "message": message, **extra}})
    )


class TestMapping:
    """The body's code picks the class; the status decides when the code is unknown."""

    @pytest.mark.parametrize(
        ("status", "code", "cls", "culm_cls"),
        [
            (404, "not_found", ce.NotFoundError, culm.NotFound),
            (409, "conflict", ce.ConflictError, culm.Conflict),
            (409, "session_busy", ce.SessionBusyError, culm.SessionBusy),
            (409, "run_finished", ce.RunFinishedError, culm.RunFinished),
            (422, "invalid_input", ce.InvalidInputError, culm.InvalidInput),
            (400, "malformed_json", ce.InvalidInputError, culm.InvalidInput),
            (413, "payload_too_large", ce.InvalidInputError, culm.InvalidInput),
            (422, "invalid_request", ce.InvalidInputError, culm.InvalidInput),
            (401, "unauthenticated", ce.AuthError, ce.APIError),
            (500, "internal_error", ce.APIError, culm.CulmError),
        ],
    )
    def test_class(self, status: int, code: str, cls: type, culm_cls: type) -> None:
        exc = error(status, code, "what happened")
        assert type(exc) is cls
        assert isinstance(exc, culm_cls)
        assert isinstance(exc, ce.ClientError)
        assert (exc.status_code, exc.code, exc.message, str(exc)) == (
            status,
            code,
            "what happened",
            "what happened",
        )

    def test_session_busy_names_the_active_run(self) -> None:
        exc = error(409, "session_busy", "busy", session_id="ses_1", active_run_id="run_2")
        assert isinstance(exc, ce.SessionBusyError)
        assert (exc.session_id, exc.active_run_id) == ("ses_1", "run_2")

    def test_session_busy_falls_back_to_the_message(self) -> None:
        message = str(culm.SessionBusy("ses_1", "run_2"))
        exc = error(409, "session_busy", message)
        assert isinstance(exc, ce.SessionBusyError)
        assert (exc.session_id, exc.active_run_id) == ("ses_1", "run_2")

    def test_run_finished_keeps_the_run_status_apart_from_the_http_status(self) -> None:
        exc = error(409, "run_finished", "done", run_id="run_1", status="completed")
        assert isinstance(exc, ce.RunFinishedError)
        assert (exc.run_id, exc.status, exc.status_code) == ("run_1", "completed", 409)

    def test_a_body_that_is_not_the_error_shape(self) -> None:
        exc = ce.error_from_response(response(502, "<html>bad gateway</html>"))
        assert type(exc) is ce.APIError
        assert exc.code == "http_502"
        assert "bad gateway" in exc.message
