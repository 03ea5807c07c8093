"""The seed's routes and the producer API: HTTP in, engine calls, the envelope out."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request
from queuetasks.engine import (
    OperatorNotAllowed,
    QueueTasksError,
    TaskInfo,
    TaskState,
)

from . import _handlers, _sse
from ._errors import envelope, error_response
from ._openapi import doc
from ._validate import check_id, read_json_object

if TYPE_CHECKING:
    from ._ext import QueueTasks

log = logging.getLogger("queuetasks.web")

#: Where the wait-sse handler leaves its stream for the ASGI wrapper's safety net.
SCOPE_STREAM_KEY = "queuetasks.stream"

Handler = Callable[..., Awaitable[Response]]


def api(handler: Handler) -> Handler:
    """Every error of the family becomes the envelope (one table, ``_errors.ERROR_TABLE``);
    anything else is a bug: logged, and a 500 envelope rather than an HTML page."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except QueueTasksError as exc:
            return error_response(exc)
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.path)
            return envelope(None, status=500, error="internal error")

    return wrapper


def iso(ext: QueueTasks, at: float) -> str:
    wall = datetime.fromtimestamp(ext.engine.wall_time(at), UTC)
    return wall.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_json(info: TaskInfo) -> dict[str, Any]:
    return {
        "taskId": info.id,
        "state": info.state.value,
        "operatorId": info.operator_id,
        "priority": info.priority,
        "pool": info.pool,
        "minGrade": info.min_grade,
        "pushed": info.pushed,
        "endReason": info.end_reason,
        "payload": info.payload,
    }


def make_blueprint(ext: QueueTasks) -> Blueprint:
    bp = Blueprint("queuetasks", __name__, url_prefix=ext.config.base_path)
    auth = ext.auth
    config = ext.config

    # ------------------------------------------------------------------ operator routes

    @bp.route("/take-free", methods=["POST"])
    @doc("operator", "TakeFree", errors=(400, 401))
    @api
    async def take_free() -> Response:
        """Take a free task at once, already assigned to the caller (or null).

        Works even while other operators wait; returns null when he already waits in a tab or
        holds an offer. 400 when the host's can_wait says no."""
        operator = await auth.operator(request)
        task_id = await ext.engine.take_free(operator)
        return envelope({"taskId": task_id})

    @bp.route("/wait-sse", methods=["GET"])
    @doc("operator", None, errors=(401, 503), sse=True)
    @api
    async def wait_sse() -> Response:
        """Wait for a task on a Server-Sent-Events stream.

        Events: `connection` (at once, then keep-alives), `task` (with `id:`), `offer-ended`;
        the stream ends after `offer-ended` or a pushed task. 204 when can_wait says no."""
        operator = await auth.operator(request)
        drain = ext.drain
        if drain.draining:
            # Shutting down: come back later, to this server's successor.
            return _sse_response(ext, _OneChunk(drain.retry()))
        try:
            stream = await ext.engine.open_stream(operator)
        except OperatorNotAllowed:
            return Response(b"", status=204)
        request.scope[SCOPE_STREAM_KEY] = stream  # type: ignore[literal-required]
        body = _sse.SseBody(stream, config.keepalive_interval, drain, config.retry_ms)
        return _sse_response(ext, body)

    @bp.route("/<task_id>/assign", methods=["POST"])
    @doc("operator", None, errors=(400, 401, 403))
    @api
    async def assign(task_id: str) -> Response:
        """Accept the task offered to the caller.

        403 (errorCode 0) when it is not, or no longer, offered to him; 403 with errorCode 910
        when the host refuses (the task is pending again)."""
        await _handlers.assign(ext, request, task_id)
        return envelope(None)

    @bp.route("/<task_id>/reject", methods=["POST"])
    @doc("operator", None, errors=(400, 401, 403))
    @api
    async def reject(task_id: str) -> Response:
        """Decline the task offered to the caller: it goes to the next operator."""
        await _handlers.reject(ext, request, task_id)
        return envelope(None)

    @bp.route("/exit", methods=["DELETE"])
    @doc("operator", None, errors=(401,))
    @api
    async def exit_() -> Response:
        """Stop waiting in every tab; an open offer goes to the next operator."""
        operator = await auth.operator(request)
        ext.engine.exit(operator.id)
        return envelope(None)

    @bp.route("/queue-operators", methods=["GET"])
    @doc("operator", "QueueOperators", errors=(401, 403))
    @api
    async def queue_operators() -> Response:
        """The operators with open tabs: waiting ones in queue order, then the busy ones."""
        await auth.supervisor(request)
        result = [
            {"operatorId": e.operator_id, "since": iso(ext, e.since), "status": e.status.value,
             "tabs": e.tabs, "taskId": e.task_id}
            for e in ext.engine.queue()
        ]
        return envelope(result)

    # ------------------------------------------------------------------ producer routes

    @bp.route("/tasks", methods=["POST"])
    @doc("producer", "TaskState", errors=(400, 401, 403, 409, 413, 415), body="NewTask",
         status=201)
    @api
    async def add_task() -> Response:
        """Add a task (offered at once or pending), or push it already assigned (operatorId)."""
        await auth.producer(request)
        body = await read_json_object(request, config.max_body)
        return envelope(_handlers.create_task(ext, body), status=201)

    @bp.route("/tasks/<task_id>", methods=["GET"])
    @doc("producer", "Task", errors=(400, 401, 403, 404))
    @api
    async def get_task(task_id: str) -> Response:
        """A task's state now."""
        check_id(task_id)
        await auth.producer(request)
        return envelope(task_json(ext.engine.task(task_id)))

    @bp.route("/tasks/<task_id>", methods=["DELETE"])
    @doc("producer", "TaskState", errors=(400, 401, 403, 404, 409))
    @api
    async def cancel_task(task_id: str) -> Response:
        """Cancel a pending or offered task (an open offer ends with reason cancelled)."""
        check_id(task_id)
        await auth.producer(request)
        ext.engine.cancel_task(task_id)
        return envelope({"taskId": task_id, "state": TaskState.CANCELLED.value})

    @bp.route("/stats", methods=["GET"])
    @doc("producer", "Stats", errors=(401, 403))
    @api
    async def stats() -> Response:
        """The engine's counts now and totals since start."""
        await auth.producer(request)
        return envelope(ext.engine.statistics())

    return bp


class _OneChunk:
    """A body of one chunk, then the end."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: bytes) -> None:
        self.chunk: bytes | None = chunk

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> bytes:
        chunk, self.chunk = self.chunk, None
        if chunk is None:
            raise StopAsyncIteration
        return chunk


def _sse_response(ext: QueueTasks, body: Any) -> Response:
    response = Response(body, status=200, headers=dict(_sse.HEADERS))
    response.headers["Access-Control-Allow-Origin"] = ext.config.cors_origin
    # Quart's RESPONSE_TIMEOUT would cut the stream; disconnects end it instead.
    response.timeout = None
    return response
