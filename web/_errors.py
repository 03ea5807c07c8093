"""Errors of the web layer, and the one table that maps every error to the seed's envelope."""

from __future__ import annotations

import json
from typing import Any

from quart import Response
from queuetasks.engine import (
    AssignmentRefused,
    EngineNotRunning,
    HostHookFailed,
    InvalidInput,
    NotOfferedToYou,
    OperatorNotAllowed,
    Overloaded,
    QueueTasksError,
    TaskClosed,
    TaskExists,
    TaskNotFound,
)

JSON_TYPE = "application/json; charset=utf-8"

#: The seed's errorCode when the host refuses an assignment.
ERROR_CODE_HOST_REFUSED = 910


class WebError(QueueTasksError):
    """An HTTP-level refusal raised by the web layer itself (auth, bad input)."""


class Unauthenticated(WebError):
    """No identity, or an invalid or expired token (401)."""


class Forbidden(WebError):
    """Known caller, not allowed to do this (403)."""


class BadRequest(WebError):
    """Malformed id, body, or parameter (400)."""


class BodyTooLarge(WebError):
    """The request body is above the configured limit (413)."""


class RouteNotFound(WebError):
    """No such route under the base path (404)."""


class MethodNotAllowed(WebError):
    """The route exists, not with this method (405)."""


class UnsupportedMediaType(WebError):
    """A JSON body was expected (415)."""


#: THE table: error family -> (HTTP status, errorCode). Checked in order (subclasses first).
#: ``OperatorNotAllowed`` is 400 here (take-free); wait-sse answers it with an empty 204,
#: as the seed did, before this table is consulted.
ERROR_TABLE: tuple[tuple[type[BaseException], int, int], ...] = (
    (Unauthenticated, 401, 0),
    (Forbidden, 403, 0),
    (BadRequest, 400, 0),
    (BodyTooLarge, 413, 0),
    (RouteNotFound, 404, 0),
    (MethodNotAllowed, 405, 0),
    (UnsupportedMediaType, 415, 0),
    (NotOfferedToYou, 403, 0),
    (AssignmentRefused, 403, ERROR_CODE_HOST_REFUSED),
    (OperatorNotAllowed, 400, 0),
    (InvalidInput, 400, 0),
    (TaskNotFound, 404, 0),
    (TaskExists, 409, 0),
    (TaskClosed, 409, 0),
    (Overloaded, 503, 0),
    (HostHookFailed, 503, 0),
    (EngineNotRunning, 503, 0),
    (QueueTasksError, 500, 0),
)


def status_for(error: BaseException) -> tuple[int, int]:
    """(HTTP status, errorCode) for an error of the family."""
    for kind, status, code in ERROR_TABLE:
        if isinstance(error, kind):
            return status, code
    return 500, 0


def envelope_json(result: Any = None, *, error: str | None = None, error_code: int = 0) -> str:
    """The seed's envelope ``{success, error, errorCode, result}`` as JSON text."""
    return json.dumps(
        {"success": error is None, "error": error, "errorCode": error_code, "result": result},
        separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    )


def envelope(result: Any = None, *, status: int = 200, error: str | None = None,
             error_code: int = 0, headers: dict[str, str] | None = None) -> Response:
    """A JSON reply in the seed's envelope ``{success, error, errorCode, result}``."""
    body = envelope_json(result, error=error, error_code=error_code)
    response = Response(body, status=status, content_type=JSON_TYPE)
    if headers:
        response.headers.update(headers)
    return response


def error_parts(error: QueueTasksError) -> tuple[int, str, dict[str, str]]:
    """(status, envelope JSON, extra headers) for an error of the family."""
    status, code = status_for(error)
    headers = {"WWW-Authenticate": 'Bearer realm="queuetasks"'} if status == 401 else {}
    if status == 503:
        headers = {"Retry-After": "1"}
    body = envelope_json(None, error=str(error) or type(error).__name__, error_code=code)
    return status, body, headers


def error_response(error: QueueTasksError) -> Response:
    status, body, headers = error_parts(error)
    response = Response(body, status=status, content_type=JSON_TYPE)
    response.headers.update(headers)
    return response
