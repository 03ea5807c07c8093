"""A real browser: headless Chromium drives the operator console with its native EventSource,
through the Chrome DevTools Protocol over a websocket (wsproto, which hypercorn brings)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from queuetasks.engine import TaskState
from queuetasks.web import WebConfig
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "about:blank"]


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing on CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed: `apt-get install chromium` runs this test")
    return CHROMIUM


class Cdp:
    """A minimal, sequential CDP client: send a command, read until its answer."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.ids = 0
        self.text = ""

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[Cdp]:
        parts = urlsplit(url)
        stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
        async with stream:
            cdp = cls(stream)
            await stream.send_all(cdp.ws.send(Request(host=parts.netloc, target=parts.path)))
            while not any(isinstance(e, AcceptConnection) for e in await cdp._read()):
                pass
            yield cdp

    async def _read(self) -> list[Any]:
        data = await self.stream.receive_some(1 << 20)
        if not data:
            raise EOFError("devtools closed the connection")
        self.ws.receive_data(data)
        events = list(self.ws.events())
        for event in events:
            if isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise EOFError("devtools closed the websocket")
        return events

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self.ids += 1
        wanted = self.ids
        message: dict[str, Any] = {"id": wanted, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(message))))
        while True:
            for event in await self._read():
                if not isinstance(event, TextMessage):
                    continue
                self.text += event.data
                if not event.message_finished:
                    continue
                reply, self.text = json.loads(self.text), ""
                if reply.get("id") == wanted:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result")


class Page:
    def __init__(self, cdp: Cdp, session: str) -> None:
        self.cdp = cdp
        self.session = session

    async def js(self, expression: str) -> Any:
        """Evaluate in the page (awaiting promises); returns the JSON value."""
        result = await self.cdp.call("Runtime.evaluate", self.session, expression=expression,
                                     awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, condition: str, timeout_ms: int = 8000) -> Any:
        """Wait inside the browser (requestAnimationFrame ticks) until ``condition`` is truthy."""
        return await self.js(f"""new Promise((resolve, reject) => {{
            const start = performance.now();
            const check = () => {{
                let value; try {{ value = ({condition}); }} catch (e) {{ value = false; }}
                if (value) {{ resolve(value); }}
                else if (performance.now() - start > {timeout_ms}) {{
                    reject(new Error("timed out waiting for: " + {json.dumps(condition)}));
                }} else {{ setTimeout(check, 20); }}
            }};
            check();
        }})""")


@asynccontextmanager
async def browser(executable: str, profile: str) -> AsyncIterator[Cdp]:
    async with trio.open_nursery() as nursery:
        process = await nursery.start(partial(
            trio.run_process, [executable, f"--user-data-dir={profile}", *FLAGS],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False))
        url = None
        buffer = b""
        with trio.fail_after(30):
            while url is None:
                chunk = await process.stderr.receive_some(65536)
                if not chunk:
                    raise RuntimeError(f"chromium exited: {buffer.decode(errors='replace')}")
                buffer += chunk
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith("DevTools listening on "):
                        url = line.split(" on ", 1)[1].strip()
        # Keep draining stderr so chromium never blocks on a full pipe.
        nursery.start_soon(_drain, process.stderr)
        try:
            async with Cdp.connect(url) as cdp:
                yield cdp
        finally:
            process.terminate()
            nursery.cancel_scope.deadline = trio.current_time() + 10


async def _drain(stream: Any) -> None:
    while await stream.receive_some(65536):
        pass


async def open_page(cdp: Cdp, url: str) -> Page:
    target = await cdp.call("Target.createTarget", url=url)
    attached = await cdp.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
    page = Page(cdp, attached["sessionId"])
    for _ in range(50):
        try:
            await page.wait_for("document.readyState === 'complete' && "
                                "location.href.startsWith('http') && "
                                "document.getElementById('wait')")
            return page
        except RuntimeError as exc:  # the navigation replaced the context: ask again
            if "context" not in str(exc):
                raise
    raise AssertionError("the console page never loaded")


async def test_console_offer_countdown_accept_reject(chromium, start_server, tmp_path):
    config = WebConfig(offer_timeout=20.0, keepalive_interval=1.0)  # demo mode: no secret
    async with start_server(config) as server, httpx.AsyncClient() as http:
        assert server.ext.config.console
        async with browser(chromium, str(tmp_path / "profile")) as cdp:
            tabs = [await open_page(cdp, server.url + "/") for _ in range(2)]
            for tab in tabs:  # two tabs of one operator
                await tab.js("document.getElementById('operator').value = 'carol'")
                await tab.js("document.getElementById('wait').click()")
                await tab.wait_for("document.getElementById('status').textContent === 'waiting'")
            assert server.engine.statistics()["open_tabs"] == 2
            assert [e.operator_id for e in server.engine.queue()] == ["carol"]

            async def add(task_id: str) -> None:
                resp = await http.post(server.api + "/tasks", json={"taskId": task_id})
                assert resp.status_code == 201

            # Offer, countdown, accept: both tabs show it, both see it end.
            await add("b1")
            for tab in tabs:
                await tab.wait_for("!document.getElementById('offer').hidden && "
                                   "document.getElementById('task-id').textContent === 'b1'")
            first = float((await tabs[0].js(
                "document.getElementById('countdown').textContent")).split()[0])
            assert 0 < first <= 20.0
            await tabs[0].wait_for(
                f"parseFloat(document.getElementById('countdown').textContent) < {first - 0.3}")
            await tabs[0].js("document.getElementById('accept').click()")
            for tab in tabs:
                await tab.wait_for(
                    "document.getElementById('result').textContent === 'task b1: assigned'")
                await tab.wait_for("document.getElementById('offer').hidden")
            assert server.engine.task("b1").state is TaskState.ASSIGNED

            # The console reconnects at once; the next offer: reject from the other tab.
            for tab in tabs:
                await tab.wait_for("document.getElementById('status').textContent === 'waiting'")
            await add("b2")
            await tabs[1].wait_for("document.getElementById('task-id').textContent === 'b2' "
                                   "&& !document.getElementById('offer').hidden")
            await tabs[1].js("document.getElementById('reject').click()")
            for tab in tabs:
                await tab.wait_for(
                    "document.getElementById('result').textContent === 'task b2: rejected'")
            assert server.engine.task("b2").state is TaskState.PENDING
            assert server.engine.statistics()["total_rejected"] == 1

            # Stop waiting: the operator leaves the queue.
            for tab in tabs:
                await tab.js("document.getElementById('stop').click()")
                await tab.wait_for("document.getElementById('status').textContent === 'idle'")
            assert server.engine.queue() == []
