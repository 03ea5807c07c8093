"""SPEC section 3 over the wire: order, eligibility, no idle match, one offer per operator, never
assigned twice, checked through a real hypercorn with real SSE clients."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
import trio
from httpx_sse import aconnect_sse
from queuetasks.engine import TaskState

from .test_server import next_event, wait_until

pytestmark = pytest.mark.e2e


async def test_order_eligibility_and_no_idle_match(server, client):
    api, producer = server.api, server.producer
    engine = server.engine

    async def add(task_id: str, **fields: object) -> None:
        resp = await client.post(f"{api}/tasks", headers=producer,
                                 json={"taskId": task_id, **fields})
        assert resp.status_code == 201, resp.text

    # Pending before anybody waits: priority first, then age; pools and grades respected.
    await add("low-old", priority=0)
    await add("high", priority=5)
    await add("low-new", priority=0)
    await add("senior", priority=9, minGrade=2)
    await add("loans", pool="loans")

    async with AsyncExitStack() as stack:
        streams = {}

        async def arrive(op: str, **claims: object) -> None:
            src = await stack.enter_async_context(
                aconnect_sse(client, "GET", f"{api}/wait-sse", headers=server.auth(op, **claims)))
            events = src.aiter_sse()
            assert (await events.__anext__()).data == '"connected"'
            streams[op] = events

        async def offered(op: str) -> str:
            sse = await next_event(streams[op])
            assert sse.event == "task", sse
            return str(json.loads(sse.data)["taskId"])

        with trio.fail_after(10):
            await arrive("junior")                        # grade 0, pool default
            assert await offered("junior") == "high"      # not "senior": grade too low
            await arrive("senior-op", grade=3)
            assert await offered("senior-op") == "senior"
            await arrive("second")
            assert await offered("second") == "low-old"   # same priority: the older one
            await arrive("loan-officer", pools=["loans"])
            assert await offered("loan-officer") == "loans"
            assert engine.task("low-new").state is TaskState.PENDING

            # Two more wait, in this order; a new task goes to the longest waiting.
            await arrive("third")
            assert await offered("third") == "low-new"
            await arrive("w1")
            await wait_until(lambda: engine.statistics()["waiting_operators"] == 1)
            await arrive("w2")
            await wait_until(lambda: engine.statistics()["waiting_operators"] == 2)
            await add("fresh")
            assert await offered("w1") == "fresh"

            # No idle match: nothing pending while someone eligible waits.
            stats = engine.statistics()
            assert stats["pending_tasks"] == 0, stats
            assert stats["waiting_operators"] == 1, stats

            # A rejected task goes to the next waiting operator (w2), never back to junior.
            assert (await client.post(f"{api}/high/reject",
                                      headers=server.auth("junior"))).status_code == 200
            ended = await next_event(streams["junior"])
            assert json.loads(ended.data) == {"taskId": "high", "reason": "rejected"}
            assert await offered("w2") == "high"

            # Only the operator it is offered to may take it, and only once.
            for op in ("junior", "w1", "senior-op"):
                resp = await client.post(f"{api}/high/assign", headers=server.auth(op))
                assert resp.status_code == 403, (op, resp.text)
            assert (await client.post(f"{api}/high/assign",
                                      headers=server.auth("w2"))).status_code == 200
            again = await client.post(f"{api}/high/assign", headers=server.auth("w2"))
            assert again.status_code == 403
            info = (await client.get(f"{api}/tasks/high", headers=producer)).json()["result"]
            assert info["state"] == "assigned"
            assert info["operatorId"] == "w2"
            assert engine.statistics()["total_assigned"] == 1
