"""Against a real hypercorn on 127.0.0.1:0 with real clients (httpx, httpx-sse, raw sockets)."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
import trio.testing
from httpx_sse import aconnect_sse
from queuetasks.engine import TaskState

pytestmark = pytest.mark.e2e


async def wait_until(predicate, limit: float = 5.0) -> None:
    """Poll a cheap in-process predicate of the engine's state until true (the server's work
    happens in other tasks of this process, triggered by real sockets: no event to wait on)."""
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)


def waiting(server) -> int:
    return server.engine.statistics()["waiting_operators"]


async def next_event(events):
    """The next SSE event that is not a keep-alive."""
    async for sse in events:
        if sse.event == "connection" and sse.data == '"keep-alive"':
            continue
        return sse
    return None


async def test_the_seed_call_order(server, client):
    """take-free (nothing), wait-sse, offer, assign, offer-ended, stream ends, again: reject."""
    api, me = server.api, server.auth("op1")
    resp = await client.post(f"{api}/take-free", headers=me)
    assert resp.json() == {"success": True, "error": None, "errorCode": 0,
                           "result": {"taskId": None}}
    with trio.fail_after(10):
        async with aconnect_sse(client, "GET", f"{api}/wait-sse", headers=me) as src:
            assert src.response.status_code == 200
            events = src.aiter_sse()
            hello = await events.__anext__()
            assert (hello.event, hello.data, hello.retry) == ("connection", '"connected"', 3000)
            await wait_until(lambda: waiting(server) == 1)
            resp = await client.post(f"{api}/tasks", headers=server.producer,
                                     json={"taskId": "171", "payload": {"n": 1}})
            assert resp.status_code == 201
            offer = await next_event(events)
            data = json.loads(offer.data)
            assert offer.event == "task"
            assert offer.id == str(data["offerId"])
            assert data["taskId"] == "171"
            assert data["assigned"] is False
            assert 0 < data["remainingSeconds"] <= 3.0
            resp = await client.post(f"{api}/171/assign", headers=me)
            assert resp.status_code == 200
            assert resp.json()["success"] is True
            ended = await next_event(events)
            assert ended.event == "offer-ended"
            assert json.loads(ended.data) == {"taskId": "171", "reason": "assigned"}
            assert await next_event(events) is None  # the stream ended
        async with aconnect_sse(client, "GET", f"{api}/wait-sse", headers=me) as src:
            events = src.aiter_sse()
            await events.__anext__()
            await client.post(f"{api}/tasks", headers=server.producer, json={"taskId": "172"})
            offer = await next_event(events)
            assert json.loads(offer.data)["taskId"] == "172"
            resp = await client.post(f"{api}/172/reject", headers=me)
            assert resp.status_code == 200
            ended = await next_event(events)
            assert json.loads(ended.data) == {"taskId": "172", "reason": "rejected"}
            assert await next_event(events) is None
        resp = await client.delete(f"{api}/exit", headers=me)
        assert resp.status_code == 200
    assert server.engine.task("171").state is TaskState.ASSIGNED
    assert server.engine.task("172").state is TaskState.PENDING


async def test_spec6_headers_and_bytes_at_once(server):
    """Raw socket: status line, headers, chunked, and the greeting without waiting."""
    stream = await trio.open_tcp_stream("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    token = server.token("raw1")
    request = (f"GET /api/v1/QueueTasks/wait-sse?access_token={token} HTTP/1.1\r\n"
               "Host: x\r\nAccept: text/event-stream\r\n\r\n")
    with trio.fail_after(5):
        await stream.send_all(request.encode())
        data = b""
        while b'data: "connected"' not in data:
            data += await stream.receive_some(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 "  or lines[0].startswith("HTTP/1.1 200")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert headers["content-type"] == "text/event-stream; charset=UTF-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["x-accel-buffering"] == "no"
    assert headers["transfer-encoding"] == "chunked"
    assert b'retry: 3000\nevent: connection\ndata: "connected"\n\n' in body
    await wait_until(lambda: waiting(server) == 1)
    # Keep-alives arrive every 0.2 s.
    with trio.fail_after(5):
        while b'"keep-alive"' not in data:
            data += await stream.receive_some(65536)
    # Closing the socket takes him out of the queue at once (not at the next write).
    await stream.aclose()
    await wait_until(lambda: waiting(server) == 0, limit=0.15)


async def test_multi_tab_one_task(server, client):
    api, me = server.api, server.auth("op1")
    async with aconnect_sse(client, "GET", f"{api}/wait-sse", headers=me) as a, \
            aconnect_sse(client, "GET", f"{api}/wait-sse", headers=me) as b:
        ea, eb = a.aiter_sse(), b.aiter_sse()
        await ea.__anext__()
        await eb.__anext__()
        await wait_until(lambda: server.engine.statistics()["open_tabs"] == 2)
        for task_id in ("m1", "m2"):
            await client.post(f"{api}/tasks", headers=server.producer, json={"taskId": task_id})
        oa, ob = await next_event(ea), await next_event(eb)
        assert oa.id == ob.id
        assert json.loads(oa.data)["taskId"] == "m1"
        assert server.engine.task("m2").state is TaskState.PENDING
        assert (await client.post(f"{api}/m1/assign", headers=me)).status_code == 200
        for events in (ea, eb):
            ended = await next_event(events)
            assert json.loads(ended.data) == {"taskId": "m1", "reason": "assigned"}
            assert await next_event(events) is None


async def test_reconnect_with_last_event_id_during_offer(server, client):
    api, me = server.api, server.auth("op1")
    async with aconnect_sse(client, "GET", f"{api}/wait-sse", headers=me) as src:
        events = src.aiter_sse()
        await events.__anext__()
        await wait_until(lambda: waiting(server) == 1)
        await client.post(f"{api}/tasks", headers=server.producer, json={"taskId": "r1"})
        first = await next_event(events)
    # The connection is gone; within the grace (0.3 s) he comes back.
    headers = {**me, "Last-Event-ID": first.id}
    async with aconnect_sse(client, "GET", f"{api}/wait-sse", headers=headers) as src:
        events = src.aiter_sse()
        await events.__anext__()
        again = await next_event(events)
        assert again.id == first.id
        assert json.loads(again.data)["taskId"] == "r1"
        left = json.loads(again.data)["remainingSeconds"]
        assert left < json.loads(first.data)["remainingSeconds"]
        assert server.engine.statistics()["total_offered"] == 1
        assert (await client.post(f"{api}/r1/assign", headers=me)).status_code == 200
        assert json.loads((await next_event(events)).data)["reason"] == "assigned"


async def test_client_vanishing_mid_offer_goes_to_next_operator(server, client):
    api = server.api
    stream = await trio.open_tcp_stream("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    request = (f"GET /api/v1/QueueTasks/wait-sse HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {server.token('gone')}\r\n\r\n")
    await stream.send_all(request.encode())
    await wait_until(lambda: waiting(server) == 1)
    await client.post(f"{api}/tasks", headers=server.producer, json={"taskId": "v1"})
    data = b""
    with trio.fail_after(5):
        while b"event: task" not in data:
            data += await stream.receive_some(65536)
    await stream.aclose()  # the tab is closed, no reject is sent
    async with aconnect_sse(client, "GET", f"{api}/wait-sse",
                            headers=server.auth("next")) as src:
        events = src.aiter_sse()
        await events.__anext__()
        # After the disconnect grace (0.3 s) the offer is withdrawn and goes to "next".
        offer = await next_event(events)
        assert json.loads(offer.data)["taskId"] == "v1"
        assert server.engine.statistics()["total_withdrawn"] == 1


async def test_push_over_the_wire(server, client):
    api, me = server.api, server.auth("op1")
    resp = await client.post(f"{api}/tasks", headers=server.producer,
                             json={"taskId": "push1", "operatorId": "op1"})
    assert resp.status_code == 201
    async with aconnect_sse(client, "GET", f"{api}/wait-sse", headers=me) as src:
        events = src.aiter_sse()
        await events.__anext__()
        task = await next_event(events)
        assert json.loads(task.data)["assigned"] is True
        assert await next_event(events) is None
    await wait_until(lambda: server.engine.statistics()["total_pushed"] == 1
                     and server.engine.statistics()["operators"] == 0)


async def test_metrics_health_openapi(server, client):
    resp = await client.get(server.url + "/healthz")
    assert resp.status_code == 200
    assert resp.json()["result"]["status"] == "ok"
    resp = await client.get(server.url + "/metrics")
    assert resp.status_code == 200
    assert "queuetasks_waiting_operators" in resp.text
    resp = await client.get(server.url + "/openapi.json")
    assert "/api/v1/QueueTasks/wait-sse" in resp.json()["paths"]
    resp = await client.get(server.url + "/docs")
    assert resp.status_code == 200
    assert "swagger" in resp.text.lower()


async def test_connection_close_requests_are_answered_and_closed(server):
    """NOTES: quart-trio left sockets open after Connection: close; check ours end."""
    stream = await trio.open_tcp_stream("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    with trio.fail_after(1):  # closed by the server at once, not after a keep-alive timeout
        while chunk := await stream.receive_some(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    await stream.aclose()


async def test_graceful_shutdown(start_server, short_config, client):
    """SIGTERM path: streams get a jittered retry and end; an assign in flight completes; the
    engine keeps every task (the open offer stays offered, pending stays pending)."""
    async with start_server(short_config) as server:
        api = server.api
        async with aconnect_sse(client, "GET", f"{api}/wait-sse",
                                headers=server.auth("op1")) as a, \
                aconnect_sse(client, "GET", f"{api}/wait-sse",
                             headers=server.auth("op2")) as b:
            ea, eb = a.aiter_sse(), b.aiter_sse()
            await ea.__anext__()
            await eb.__anext__()
            await wait_until(lambda: waiting(server) == 2)
            for task_id in ("g1", "g2", "g3"):
                await client.post(f"{api}/tasks", headers=server.producer,
                                  json={"taskId": task_id})
            assert json.loads((await next_event(ea)).data)["taskId"] == "g1"
            assert json.loads((await next_event(eb)).data)["taskId"] == "g2"
            server.shutdown.set()
            for events in (ea, eb):
                last = await events.__anext__()
                assert last.event == "message"
                assert last.data == ""
                assert 1000 <= last.retry <= 10_000
                assert await next_event(events) is None
        with trio.fail_after(10):
            await server.stopped.wait()
        with pytest.raises(httpx.ConnectError):
            await client.get(server.url + "/healthz")
        engine = server.engine
        assert not engine.running
        # No task lost: offers still open or (after the disconnect grace) pending again.
        for task_id in ("g1", "g2", "g3"):
            assert engine.task(task_id).state in (TaskState.OFFERED, TaskState.PENDING)
        assert engine.statistics()["total_cancelled"] == 0
