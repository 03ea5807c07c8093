"""Baseline SSE servers for the scale harness: what each layer of QueueTasks costs.

Two servers with the same URL shapes as QueueTasks, so one client drives all three:

- ``bare-hypercorn``: a plain ASGI app on hypercorn's trio worker, no framework, no engine.
- ``sse-starlette``: sse-starlette on uvicorn (uvloop + httptools when installed), the stack a
  Python user would otherwise pick.

Routes (both servers):

- ``GET /api/v1/QueueTasks/wait-sse``: ``retry:`` + ``event: connection`` at once, then
  ``event: connection`` / ``data: "keep-alive"`` every ``--keepalive-interval`` seconds. The
  operator id comes from the bearer token's ``sub`` (not verified), an ``access_token`` or
  ``operator`` query parameter, or a counter.
- ``POST /push/{operatorId}``: the request body becomes the ``data:`` of one ``event: task`` on that
  operator's stream(s); 200, or 404 when the operator has no stream. Push latency is measured the
  way QueueTasks' time-to-offer is.
- ``GET /stats``: ``{"connections": n, "pushed": n}``; ``GET /healthz``.

Run: ``python -m loadtests.baselines bare-hypercorn --host 127.0.0.1 --port 0``; prints
``bare-hypercorn: listening on http://127.0.0.1:PORT`` to stderr once
bound. These are deliberately
naive (default GC, no tuning beyond a large backlog): they stand for "the obvious server".
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from loadtests.tokens import BASE_PATH, unverified_subject

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=UTF-8"),
    (b"cache-control", b"no-cache"),
    (b"access-control-allow-origin", b"*"),
    (b"x-accel-buffering", b"no"),
]
FIRST_BYTES = b'retry: 3000\nevent: connection\ndata: "connected"\n\n'
KEEPALIVE = b'event: connection\ndata: "keep-alive"\n\n'
WAIT_PATH = f"{BASE_PATH}/wait-sse"
BACKLOG = 4096

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_anon = itertools.count(1)


def operator_from(headers: list[tuple[bytes, bytes]], query: bytes) -> str:
    for name, value in headers:
        if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
            sub = unverified_subject(value[7:].decode("latin-1"))
            if sub:
                return sub
    qs = parse_qs(query.decode("latin-1"))
    if "access_token" in qs:
        sub = unverified_subject(qs["access_token"][0])
        if sub:
            return sub
    if "operator" in qs:
        return qs["operator"][0]
    return f"anon-{next(_anon)}"


def _print_listening(name: str, url: str) -> None:
    print(f"{name}: listening on {url}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- bare hypercorn


def make_bare_app(keepalive_interval: float) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    import trio

    streams: dict[str, set[trio.MemorySendChannel[bytes]]] = {}
    counters = {"connections": 0, "pushed": 0}

    async def reply(send: Send, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def read_body(receive: Receive) -> bytes:
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        return b"".join(chunks)

    async def sse(scope: Scope, receive: Receive, send: Send) -> None:
        operator = operator_from(scope["headers"], scope["query_string"])
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": FIRST_BYTES, "more_body": True})
        send_ch, recv_ch = trio.open_memory_channel[bytes](16)
        streams.setdefault(operator, set()).add(send_ch)
        counters["connections"] += 1
        try:
            async with trio.open_nursery() as nursery:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_disconnect)
                while True:
                    data: bytes | None = None
                    with trio.move_on_after(keepalive_interval):
                        data = await recv_ch.receive()
                    if data is None:
                        msg = {"type": "http.response.body", "body": KEEPALIVE, "more_body": True}
                        await send(msg)
                    else:
                        body = b"event: task\ndata: " + data + b"\n\n"
                        await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            counters["connections"] -= 1
            group = streams.get(operator)
            if group is not None:
                group.discard(send_ch)
                if not group:
                    del streams[operator]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == WAIT_PATH and method == "GET":
            await sse(scope, receive, send)
        elif path.startswith("/push/") and method == "POST":
            data = (await read_body(receive)).replace(b"\n", b" ")
            group = streams.get(path[len("/push/") :])
            if not group:
                await reply(send, 404, {"success": False})
                return
            for ch in group:
                with contextlib.suppress(trio.WouldBlock):
                    ch.send_nowait(data)
            counters["pushed"] += 1
            await reply(send, 200, {"success": True})
        elif path == "/stats":
            await reply(send, 200, {"success": True, "result": dict(counters)})
        elif path == "/healthz":
            await reply(send, 200, {"success": True})
        else:
            await reply(send, 404, {"success": False, "error": "not found"})

    return app


def run_bare_hypercorn(host: str, port: int, keepalive_interval: float) -> None:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = BACKLOG
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, make_bare_app(keepalive_interval), config)
            _print_listening("bare-hypercorn", binds[0])

    trio.run(main)


# --------------------------------------------------------------------------- sse-starlette


def make_starlette_app(keepalive_interval: float) -> Any:
    import asyncio

    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    streams: dict[str, set[asyncio.Queue[str]]] = {}
    counters = {"connections": 0, "pushed": 0}

    async def wait_sse(request: Request) -> Response:
        operator = operator_from(request.scope["headers"], request.scope["query_string"])
        queue: asyncio.Queue[str] = asyncio.Queue(16)
        streams.setdefault(operator, set()).add(queue)
        counters["connections"] += 1

        async def events() -> Any:
            try:
                yield ServerSentEvent(data='"connected"', event="connection", retry=3000)
                while True:
                    yield ServerSentEvent(data=await queue.get(), event="task")
            finally:
                counters["connections"] -= 1
                group = streams.get(operator)
                if group is not None:
                    group.discard(queue)
                    if not group:
                        del streams[operator]

        return EventSourceResponse(
            events(),
            ping=keepalive_interval,
            ping_message_factory=lambda: ServerSentEvent(data='"keep-alive"', event="connection"),
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"},
        )

    async def push(request: Request) -> Response:
        data = (await request.body()).decode().replace("\n", " ")
        group = streams.get(request.path_params["operator"])
        if not group:
            return JSONResponse({"success": False}, status_code=404)
        for queue in group:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(data)
        counters["pushed"] += 1
        return JSONResponse({"success": True})

    async def stats(request: Request) -> Response:
        return JSONResponse({"success": True, "result": dict(counters)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"success": True})

    return Starlette(
        routes=[
            Route(WAIT_PATH, wait_sse),
            Route("/push/{operator}", push, methods=["POST"]),
            Route("/stats", stats),
            Route("/healthz", healthz),
        ]
    )


def run_sse_starlette(host: str, port: int, keepalive_interval: float) -> None:
    import importlib.util

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    config = uvicorn.Config(
        make_starlette_app(keepalive_interval),
        loop="uvloop" if has_uvloop else "asyncio",
        http="httptools" if has_httptools else "h11",
        backlog=BACKLOG,
        access_log=False,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    bound_host, bound_port = sock.getsockname()[:2]
    _print_listening("sse-starlette", f"http://{bound_host}:{bound_port}")
    server.run(sockets=[sock])


SERVERS = {"bare-hypercorn": run_bare_hypercorn, "sse-starlette": run_sse_starlette}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keepalive-interval", type=float, default=25.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        SERVERS[args.server](args.host, args.port, args.keepalive_interval)


if __name__ == "__main__":
    main()
