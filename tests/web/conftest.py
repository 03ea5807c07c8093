"""In-process harness: a QuartTrio app with QueueTasks, Quart's test client, lifespan running."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio
from queuetasks.engine import AssignmentRefused, Hooks, Operator, TaskInfo
from queuetasks.web import QueueTasks, WebConfig, make_token

SECRET = "test-secret-" + "0123456789abcdef" * 4
BASE = "/api/v1/QueueTasks"


class FakeHooks(Hooks):
    """The host, as plain state the tests flip."""

    def __init__(self) -> None:
        self.banned: set[str] = set()
        self.refuse: set[str] = set()
        self.confirmed: list[tuple[str, str]] = []

    async def can_wait(self, operator: Operator) -> bool:
        return operator.id not in self.banned

    async def confirm_assignment(self, task: TaskInfo, operator: Operator) -> bool:
        if task.id in self.refuse:
            raise AssignmentRefused(f"host refuses task {task.id}")
        self.confirmed.append((task.id, operator.id))
        return True


@dataclass
class SseEvent:
    event: str | None
    data: Any
    id: str | None = None
    retry: int | None = None


@dataclass
class SseReader:
    """Reads events from a test-client connection (or any ``receive() -> bytes``)."""

    conn: Any
    buffer: bytes = b""
    ended: bool = False
    left: bool = False
    raw: list[bytes] = field(default_factory=list)

    async def _more(self) -> None:
        try:
            chunk = await self.conn.receive()
        except trio.EndOfChannel:
            self.ended = True
            raise
        self.raw.append(chunk)
        self.buffer += chunk

    async def next(self) -> SseEvent:
        """The next block (an event, or a bare ``retry:``). Raises EndOfChannel at the end."""
        with trio.fail_after(60):  # a guard longer than any configured interval
            while b"\n\n" not in self.buffer:
                await self._more()
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        ev = SseEvent(None, None)
        data: list[str] = []
        for line in block.decode().split("\n"):
            name, _, value = line.partition(": ")
            if name == "event":
                ev.event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                ev.id = value
            elif name == "retry":
                ev.retry = int(value)
        if data:
            ev.data = json.loads("\n".join(data))
        return ev

    async def next_event(self) -> SseEvent:
        """The next event that is not a keep-alive."""
        while True:
            ev = await self.next()
            if ev.event == "connection" and ev.data == "keep-alive":
                continue
            return ev

    @property
    def status(self) -> int | None:
        return self.conn.status_code  # type: ignore[no-any-return]

    @property
    def headers(self) -> Any:
        return self.conn.headers

    async def leave(self) -> None:
        """The client goes away (closes the connection)."""
        self.left = True
        await self.conn.disconnect()
        # quart-trio's test connection waits for a final body that a cancelled app never
        # sends: once the app is done, end the client side ourselves.
        await trio.testing.wait_all_tasks_blocked()
        self.conn._client_send.close()

    async def rest(self) -> bytes:
        """Everything up to the end of the response (for non-SSE answers)."""
        with trio.fail_after(60):
            while True:
                try:
                    await self._more()
                except trio.EndOfChannel:
                    break
        rest, self.buffer = self.buffer, b""
        return rest

    async def end(self) -> None:
        """Wait for the end of the stream; fails on any further event."""
        with trio.fail_after(60):
            while True:
                try:
                    await self._more()
                except trio.EndOfChannel:
                    break
        assert self.buffer == b"", self.buffer


class Harness:
    def __init__(self, app: QuartTrio, ext: QueueTasks, hooks: FakeHooks) -> None:
        self.app = app
        self.ext = ext
        self.engine = ext.engine
        self.hooks = hooks
        self.client = app.test_client()

    def token(self, sub: str, **claims: Any) -> str:
        return make_token(SECRET, sub, **claims)

    def auth(self, sub: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, **claims)}"}

    @property
    def producer(self) -> dict[str, str]:
        return self.auth("backend", role="producer")

    async def post(self, path: str, who: str | None = None, **kw: Any) -> Any:
        headers = self.auth(who) if who else kw.pop("headers", None)
        return await self.client.post(BASE + path, headers=headers, **kw)

    @asynccontextmanager
    async def sse(self, who: str | None, *, query: dict[str, str] | None = None,
                  headers: dict[str, str] | None = None,
                  hello: bool = True) -> AsyncIterator[SseReader]:
        """An open wait-sse; with ``hello`` its greeting is already read and checked. The
        client disconnects on exit unless the stream already ended (``reader.leave()``)."""
        hdrs = dict(headers or {})
        if who is not None:
            hdrs.update(self.auth(who))
        async with self.client.request(BASE + "/wait-sse", method="GET", headers=hdrs,
                                       query_string=query) as conn:
            await conn.send_complete()
            reader = SseReader(conn)
            if hello:
                greeting = await reader.next()
                assert greeting.retry == 3000, greeting
                assert greeting.event == "connection", greeting
                assert greeting.data == "connected"
            try:
                yield reader
            finally:
                if not reader.ended and not reader.left:
                    await reader.leave()

    async def add(self, task_id: str, **body: Any) -> Any:
        return await self.client.post(BASE + "/tasks", headers=self.producer,
                                      json={"taskId": task_id, **body})

    async def settle(self) -> None:
        await trio.testing.wait_all_tasks_blocked()


def make_app(config: WebConfig | None = None, hooks: Hooks | None = None,
             **kwargs: Any) -> tuple[QuartTrio, QueueTasks]:
    app = QuartTrio(__name__)
    ext = QueueTasks(app, config=config or WebConfig(jwt_secret=SECRET), hooks=hooks, **kwargs)
    return app, ext


@pytest.fixture(params=[True, False], ids=["lean", "quart"])
def web_config(request: pytest.FixtureRequest) -> WebConfig:
    """Every test that uses ``h`` runs twice: the hot routes on the lean ASGI path, and all
    routes through Quart (``lean_path=False``); the contract is the same."""
    return WebConfig(jwt_secret=SECRET, offer_timeout=40.0, keepalive_interval=25.0,
                     lean_path=request.param)


@pytest.fixture
async def h(web_config: WebConfig) -> AsyncIterator[Harness]:
    hooks = FakeHooks()
    app, ext = make_app(web_config, hooks)
    async with app.test_app():
        yield Harness(app, ext, hooks)


@asynccontextmanager
async def _harness(config: WebConfig | None = None, hooks: FakeHooks | None = None,
                   **kwargs: Any) -> AsyncIterator[Harness]:
    hooks = hooks or FakeHooks()
    app, ext = make_app(config, hooks, **kwargs)
    async with app.test_app():
        yield Harness(app, ext, hooks)


@pytest.fixture
def make_harness() -> Callable[..., Any]:
    """``async with make_harness(config, hooks, **QueueTasks kwargs) as h:``"""
    return _harness
