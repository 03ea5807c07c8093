"""A real hypercorn (trio worker) on 127.0.0.1 port 0, started in the test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio
from queuetasks.engine import Engine, Hooks
from queuetasks.web import QueueTasks, WebConfig, make_token
from queuetasks.web._server import create_app, serve

SECRET = "e2e-secret-0123456789abcdef0123456789abcdef"
BASE = "/api/v1/QueueTasks"


@dataclass
class Server:
    url: str
    app: QuartTrio
    ext: QueueTasks
    shutdown: trio.Event
    stopped: trio.Event

    @property
    def engine(self) -> Engine:
        return self.ext.engine

    @property
    def api(self) -> str:
        return self.url + BASE

    def token(self, sub: str, **claims: Any) -> str:
        return make_token(SECRET, sub, **claims)

    def auth(self, sub: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, **claims)}"}

    @property
    def producer(self) -> dict[str, str]:
        return self.auth("backend", role="producer")


@asynccontextmanager
async def running_server(config: WebConfig | None = None,
                         hooks: Hooks | None = None) -> AsyncIterator[Server]:
    config = config or WebConfig(jwt_secret=SECRET)
    config = config.replace(host="127.0.0.1", port=0, gc_tuning=False)
    app, ext = create_app(config, hooks)
    shutdown, stopped = trio.Event(), trio.Event()

    async def run(*, task_status: trio.TaskStatus[str]) -> None:
        try:
            await serve(app, ext, shutdown=shutdown, task_status=task_status)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        url = await nursery.start(run)
        server = Server(url, app, ext, shutdown, stopped)
        try:
            yield server
        finally:
            shutdown.set()
            with trio.fail_after(15):
                await stopped.wait()


@pytest.fixture
def short_config() -> WebConfig:
    return WebConfig(jwt_secret=SECRET, offer_timeout=3.0, keepalive_interval=0.2,
                     disconnect_grace=0.3, graceful_timeout=2.0)


@pytest.fixture
async def server(short_config: WebConfig) -> AsyncIterator[Server]:
    async with running_server(short_config) as srv:
        yield srv


@pytest.fixture
def start_server() -> Callable[..., Any]:
    return running_server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as c:
        yield c
