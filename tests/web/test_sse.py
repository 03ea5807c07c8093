"""wait-sse in process: greeting, keep-alives, offers, resume, offer-ended, pushes, disconnects."""

from __future__ import annotations

import trio
import trio.testing
from queuetasks.engine import EventKind, TaskState
from queuetasks.web import WebConfig

BASE = "/api/v1/QueueTasks"
SECRET = "test-secret-" + "0123456789abcdef" * 4


async def test_headers_and_greeting_at_once(h):
    async with h.sse("op1", hello=False) as reader:
        hello = await reader.next()
        assert hello.retry == 3000
        assert (hello.event, hello.data) == ("connection", "connected")
        assert reader.raw[0] == b'retry: 3000\nevent: connection\ndata: "connected"\n\n'
        assert reader.status == 200
        assert reader.headers["Content-Type"] == "text/event-stream; charset=UTF-8"
        assert reader.headers["Cache-Control"] == "no-cache"
        assert reader.headers["X-Accel-Buffering"] == "no"
        assert reader.headers["Access-Control-Allow-Origin"] == "*"
        await h.settle()
        assert [e.operator_id for e in h.engine.queue()] == ["op1"]
        await reader.leave()
        await h.settle()
        assert h.engine.queue() == []
        assert h.engine.statistics()["open_streams"] == 0


async def test_keepalive_every_interval(h, autojump_clock):
    async with h.sse("op1") as reader:
        start = trio.current_time()
        for n in (1, 2):
            ev = await reader.next()
            assert (ev.event, ev.data) == ("connection", "keep-alive")
            assert ev.id is None
            assert trio.current_time() - start == 25.0 * n


async def test_offer_then_assign_ends_every_tab(h):
    async with h.sse("op1") as r1, h.sse("op1") as r2:
        resp = await h.add("171", payload={"x": 1})
        assert resp.status_code == 201
        assert (await resp.get_json())["result"] == {"taskId": "171", "state": "offered"}
        for reader in (r1, r2):
            ev = await reader.next_event()
            assert ev.event == "task"
            assert ev.data["taskId"] == "171"
            assert ev.data["assigned"] is False
            assert ev.id == str(ev.data["offerId"])
            assert 39 < ev.data["remainingSeconds"] <= 40
            assert ev.data["payload"] == {"x": 1}
        resp = await h.post("/171/assign", "op1")
        assert resp.status_code == 200
        assert await resp.get_json() == {"success": True, "error": None, "errorCode": 0,
                                         "result": None}
        for reader in (r1, r2):
            ev = await reader.next_event()
            assert ev.event == "offer-ended"
            assert ev.data == {"taskId": "171", "reason": "assigned"}
            await reader.end()
    assert h.engine.task("171").state is TaskState.ASSIGNED
    assert h.hooks.confirmed == [("171", "op1")]


async def test_reconnect_during_offer_gets_same_offer_with_time_left(h, autojump_clock):
    async with h.sse("op1") as reader:
        await h.add("7")
        first = await reader.next_event()
    await trio.sleep(10)  # virtual clock: the offer is 10 s older
    async with h.sse("op1", headers={"Last-Event-ID": first.id}) as reader:
        again = await reader.next_event()
        assert again.id == first.id
        assert again.data["taskId"] == "7"
        assert again.data["remainingSeconds"] == 30.0
        # A second task does not reach him while his offer is open.
        await h.add("8")
        assert h.engine.task("8").state is TaskState.PENDING
        resp = await h.post("/7/reject", "op1")
        assert resp.status_code == 200
        ended = await reader.next_event()
        assert ended.data == {"taskId": "7", "reason": "rejected"}
        await reader.end()
    # His next wait-sse gets task 8 (7 is excluded for him after his reject).
    async with h.sse("op1") as reader:
        ev = await reader.next_event()
        assert ev.data["taskId"] == "8"


async def test_expiry_reported_to_all_tabs(h, autojump_clock):
    async with h.sse("op1") as r1, h.sse("op1") as r2:
        await h.add("9")
        for reader in (r1, r2):
            assert (await reader.next_event()).event == "task"
        start = trio.current_time()
        for reader in (r1, r2):
            ev = await reader.next_event()
            assert ev.data == {"taskId": "9", "reason": "expired"}
            await reader.end()
        assert trio.current_time() - start == 40.0
    assert h.engine.task("9").state is TaskState.PENDING


async def test_cancelled_task_ends_offer(h):
    async with h.sse("op1") as reader:
        await h.add("5")
        await reader.next_event()
        resp = await h.client.delete(BASE + "/tasks/5", headers=h.producer)
        assert resp.status_code == 200
        ev = await reader.next_event()
        assert ev.data == {"taskId": "5", "reason": "cancelled"}
        await reader.end()


async def test_exit_ends_every_tab_and_withdraws(h):
    async with h.sse("op1") as r1, h.sse("op1") as r2:
        await h.add("e1")
        for reader in (r1, r2):
            await reader.next_event()
        resp = await h.client.delete(BASE + "/exit", headers=h.auth("op1"))
        assert resp.status_code == 200
        for reader in (r1, r2):
            ev = await reader.next_event()
            assert ev.data == {"taskId": "e1", "reason": "withdrawn"}
            await reader.end()
    assert h.engine.task("e1").state is TaskState.PENDING


async def test_push_is_delivered_then_stream_ends(h):
    async with h.sse("op1") as reader:
        resp = await h.add("p1", operatorId="op1", payload="hello")
        assert resp.status_code == 201
        assert (await resp.get_json())["result"]["state"] == "assigned"
        ev = await reader.next_event()
        assert ev.event == "task"
        assert ev.data["assigned"] is True
        assert ev.data["taskId"] == "p1"
        assert ev.data["payload"] == "hello"
        assert ev.data["remainingSeconds"] is None
        await reader.end()
    stats = h.engine.statistics()
    assert stats["total_pushed"] == 1
    assert stats["operators"] == 0


async def test_push_kept_until_operator_connects(h):
    await h.add("p2", operatorId="op9")
    async with h.sse("op9") as reader:
        ev = await reader.next_event()
        assert ev.data["taskId"] == "p2"
        assert ev.data["assigned"] is True
        await reader.end()


async def test_vanishing_client_leaves_queue_at_once(h):
    async with h.sse("op1") as reader:
        await h.settle()
        assert h.engine.statistics()["waiting_operators"] == 1
        await reader.leave()
        await h.settle()
        stats = h.engine.statistics()
        assert stats["waiting_operators"] == 0
        assert stats["open_streams"] == 0


async def test_vanishing_during_offer_withdrawn_after_grace(make_harness, autojump_clock):
    config = WebConfig(jwt_secret=SECRET, disconnect_grace=5.0)
    async with make_harness(config) as h:
        with h.engine.subscribe() as events:
            async with h.sse("op1") as reader:
                await h.add("w1")
                await reader.next_event()
                await reader.leave()
            start = trio.current_time()
            with trio.fail_after(100):
                async for event in events:
                    if event.kind is EventKind.WITHDRAWN:
                        break
        assert trio.current_time() - start == 5.0
        assert h.engine.task("w1").state is TaskState.PENDING


async def test_default_grace_is_offer_timeout(h, autojump_clock):
    """With the default grace (= offer timeout) a vanished offer simply expires at 40 s."""
    with h.engine.subscribe() as events:
        async with h.sse("op1") as reader:
            await h.add("w2")
            await reader.next_event()
            await reader.leave()
        with trio.fail_after(100):
            async for event in events:
                if event.kind in (EventKind.WITHDRAWN, EventKind.EXPIRED):
                    break
    assert event.kind is EventKind.EXPIRED
    assert event.at == 40.0


async def test_can_wait_false_gives_204(h):
    h.hooks.banned.add("op1")
    async with h.sse("op1", hello=False) as reader:
        await reader.end()
        assert reader.status == 204
        assert b"".join(reader.raw) == b""
    assert h.engine.queue() == []


async def test_no_token_gives_401_envelope(h):
    async with h.sse(None, hello=False) as reader:
        body = await reader.rest()
        assert reader.status == 401
        assert b'"success":false' in body


async def test_overloaded_gives_503(make_harness):
    async with make_harness(WebConfig(jwt_secret=SECRET, max_streams=1)) as h, \
            h.sse("op1"), h.sse("op2", hello=False) as reader2:
        body = await reader2.rest()
        assert reader2.status == 503
        assert b'"success":false' in body


async def test_drain_tells_streams_to_come_back_later(h):
    async with h.sse("op1") as r1, h.sse("op2") as r2:
        await h.settle()
        h.ext.start_drain()
        for reader in (r1, r2):
            ev = await reader.next()
            assert ev.event is None
            assert 1000 <= ev.retry <= 10_000
            await reader.end()
        await h.settle()
        assert h.engine.statistics()["open_streams"] == 0
    async with h.sse("op3", hello=False) as reader:
        ev = await reader.next()
        assert 1000 <= ev.retry <= 10_000
        await reader.end()
