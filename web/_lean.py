"""The lean path: the hot routes served straight from the ASGI scope.

``GET wait-sse``, ``POST {taskId}/assign``, ``POST {taskId}/reject`` and ``POST tasks`` are
what tens of thousands of operators and a busy producer call all day. Through Quart each costs a
request object, its contexts, a response object and a task more per connection (NOTES: ~10 KB
and ~0.7 ms per connection). When the identity is the server's own (an ``Auth`` with
``lean = True``: JWTs or the demo), these four routes run here instead, on the same
``_handlers`` and ``_sse`` code as the Quart routes, with the same envelope, headers and status
codes. Everything else, and every host-provided identity, goes through Quart.

Each stream is its own nursery: the writer, and a watcher that waits for ``http.disconnect``
and cancels the writer, so a client that goes away is noticed at once, not at the next write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from quart import Request
from queuetasks.engine import OperatorNotAllowed, QueueTasksError
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.http import parse_cookie

from . import _handlers, _sse
from ._errors import JSON_TYPE, envelope_json, error_parts
from ._validate import add_chunk, check_json_head, parse_json_object

if TYPE_CHECKING:
    from ._ext import QueueTasks

log = logging.getLogger("queuetasks.web")

Handler = Callable[[HTTPScope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


class ScopeRequest:
    """The parts of a request a ``lean`` ``Auth`` reads (``headers``, ``args``, ``cookies``),
    from the ASGI scope alone."""

    __slots__ = ("_cookies", "args", "headers")

    def __init__(self, scope: HTTPScope) -> None:
        self.headers = Headers([(k.decode("latin-1"), v.decode("latin-1"))
                                for k, v in scope["headers"]])
        query = scope["query_string"].decode("latin-1")
        self.args: MultiDict[str, str] = MultiDict(parse_qsl(query, keep_blank_values=True))
        self._cookies: Any = None

    @property
    def cookies(self) -> Any:
        if self._cookies is None:
            self._cookies = parse_cookie(self.headers.get("Cookie", ""))
        return self._cookies


class _Gone(Exception):
    """The client disconnected while we read its request body."""


class LeanRoutes:
    """Finds the lean handler for a scope, or None (then Quart serves it)."""

    def __init__(self, ext: QueueTasks) -> None:
        self._ext = ext
        self._prefix = ext.config.base_path.rstrip("/") + "/"
        self._cors = ext.config.cors_origin.encode("latin-1")
        self._sse_headers = [(k.lower().encode(), v.encode()) for k, v in _sse.HEADERS.items()]
        self._sse_headers.append((b"access-control-allow-origin", self._cors))

    def match(self, scope: Scope) -> Handler | None:
        if scope["type"] != "http" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not path.startswith(self._prefix):
            return None
        rest, method = path[len(self._prefix):], scope["method"]
        if method == "GET" and rest == "wait-sse":
            return self.wait_sse
        if method != "POST":
            return None
        if rest == "tasks":
            return self.add_task
        task_id, slash, verb = rest.rpartition("/")
        if slash and task_id and "/" not in task_id:
            if verb == "assign":
                return self.assign
            if verb == "reject":
                return self.reject
        return None

    # ------------------------------------------------------------------ JSON routes

    async def assign(self, scope: HTTPScope, receive: ASGIReceiveCallable,
                     send: ASGISendCallable) -> None:
        task_id = scope["path"][len(self._prefix):].rpartition("/")[0]
        await self._json(send, self._call(_handlers.assign, scope, task_id))

    async def reject(self, scope: HTTPScope, receive: ASGIReceiveCallable,
                     send: ASGISendCallable) -> None:
        task_id = scope["path"][len(self._prefix):].rpartition("/")[0]
        await self._json(send, self._call(_handlers.reject, scope, task_id))

    async def _call(self, handler: Callable[..., Awaitable[None]], scope: HTTPScope,
                    task_id: str) -> tuple[int, str, dict[str, str]]:
        await handler(self._ext, cast(Request, ScopeRequest(scope)), task_id)
        return 200, envelope_json(None), {}

    async def add_task(self, scope: HTTPScope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        async def create() -> tuple[int, str, dict[str, str]]:
            ext = self._ext
            req = ScopeRequest(scope)
            await ext.auth.producer(cast(Request, req))
            body = await self._read_json(req, receive)
            return 201, envelope_json(_handlers.create_task(ext, body)), {}

        try:
            await self._json(send, create())
        except _Gone:
            return

    async def _read_json(self, req: ScopeRequest, receive: ASGIReceiveCallable) -> dict[str, Any]:
        max_body = self._ext.config.max_body
        ctype = req.headers.get("Content-Type", "")
        mimetype = ctype.partition(";")[0].strip().lower() or None
        raw_length = req.headers.get("Content-Length")
        length = int(raw_length) if raw_length and raw_length.isdigit() else None
        check_json_head(mimetype, length, max_body)
        data = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            add_chunk(data, message.get("body", b""), max_body)  # type: ignore[arg-type]
            if not message.get("more_body", False):
                return parse_json_object(bytes(data))

    async def _json(self, send: ASGISendCallable,
                    reply: Awaitable[tuple[int, str, dict[str, str]]]) -> None:
        """Await ``reply`` and send it, or the error it raised, in the envelope."""
        try:
            status, text, extra = await reply
        except QueueTasksError as exc:
            status, text, extra = error_parts(exc)
        except _Gone:
            raise
        except Exception:
            log.exception("unexpected error on the lean path")
            status, text, extra = 500, envelope_json(None, error="internal error"), {}
        await self._send_json(send, status, text, extra)

    async def _send_json(self, send: ASGISendCallable, status: int, text: str,
                         extra: dict[str, str]) -> None:
        body = text.encode()
        headers = [(b"content-type", JSON_TYPE.encode()),
                   (b"content-length", str(len(body)).encode()),
                   (b"access-control-allow-origin", self._cors)]
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # ------------------------------------------------------------------ the stream

    async def wait_sse(self, scope: HTTPScope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        ext = self._ext
        config = ext.config
        try:
            operator = await ext.auth.operator(cast(Request, ScopeRequest(scope)))
            if ext.drain.draining:
                # Shutting down: come back later, to this server's successor.
                await send({"type": "http.response.start", "status": 200,
                            "headers": self._sse_headers})
                await send({"type": "http.response.body", "body": ext.drain.retry(),
                            "more_body": False})
                return
            stream = await ext.engine.open_stream(operator)
        except OperatorNotAllowed:
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(b"access-control-allow-origin", self._cors)]})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        except QueueTasksError as exc:
            await self._send_json(send, *error_parts(exc))
            return
        except Exception:
            log.exception("unexpected error on the lean path (wait-sse)")
            await self._send_json(send, 500, envelope_json(None, error="internal error"), {})
            return
        body = _sse.SseBody(stream, config.keepalive_interval, ext.drain, config.retry_ms)
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self._sse_headers})
            gone = False
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal gone
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    gone = True
                    # The tab leaves the engine in this step (a waiting operator leaves the
                    # queue now), before the writer has even unwound.
                    stream.close()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                async for chunk in body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                nursery.cancel_scope.cancel()  # the stream ended: stop watching
            if not gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            stream.close()
