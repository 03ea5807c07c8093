"""Every route of SPEC section 5 and the producer API: status codes, envelope, no state change."""

from __future__ import annotations

import pytest
import trio
from queuetasks.engine import TaskState

BASE = "/api/v1/QueueTasks"


async def envelope_of(resp, status):
    body = await resp.get_json()
    assert resp.status_code == status, body
    assert set(body) == {"success", "error", "errorCode", "result"}
    assert body["success"] is (status < 400)
    return body


def snapshot(h):
    stats = h.engine.statistics()
    return stats, [(e.operator_id, e.status) for e in h.engine.queue()]


# ---------------------------------------------------------------- take-free


async def test_take_free_gets_a_pending_task_already_assigned(h):
    await h.add("t1", priority=1)
    await h.add("t2", priority=5)
    body = await envelope_of(await h.post("/take-free", "op1"), 200)
    assert body["result"] == {"taskId": "t2"}
    assert h.engine.task("t2").state is TaskState.ASSIGNED
    assert h.engine.task("t2").operator_id == "op1"


async def test_take_free_none_gives_null(h):
    body = await envelope_of(await h.post("/take-free", "op1"), 200)
    assert body["result"] == {"taskId": None}


async def test_take_free_respects_pool_and_grade(h):
    await h.add("vip", pool="vip", minGrade=3)
    body = await envelope_of(await h.post("/take-free", "op1"), 200)
    assert body["result"] == {"taskId": None}
    resp = await h.client.post(BASE + "/take-free",
                               headers=h.auth("op2", grade=3, pools=["vip", "default"]))
    assert (await envelope_of(resp, 200))["result"] == {"taskId": "vip"}


async def test_take_free_can_wait_false_gives_400(h):
    h.hooks.banned.add("op1")
    await h.add("t1")
    await envelope_of(await h.post("/take-free", "op1"), 400)
    assert h.engine.task("t1").state is TaskState.PENDING


async def test_take_free_without_token_gives_401(h):
    resp = await h.client.post(BASE + "/take-free")
    body = await envelope_of(resp, 401)
    assert "token" in body["error"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# ---------------------------------------------------------------- assign / reject


async def test_assign_someone_elses_task_gives_403_and_changes_nothing(h):
    async with h.sse("op1") as reader:
        await h.add("a1")
        await reader.next_event()
        before = snapshot(h)
        body = await envelope_of(await h.post("/a1/assign", "op2"), 403)
        assert body["errorCode"] == 0
        body = await envelope_of(await h.post("/a1/reject", "op2"), 403)
        assert snapshot(h) == before
        assert h.engine.task("a1").state is TaskState.OFFERED


async def test_assign_unknown_or_ended_task_gives_403(h):
    await envelope_of(await h.post("/nope/assign", "op1"), 403)
    await envelope_of(await h.post("/nope/reject", "op1"), 403)
    async with h.sse("op1") as reader:
        await h.add("a2")
        await reader.next_event()
        await envelope_of(await h.post("/a2/assign", "op1"), 200)
        await reader.next_event()
    body = await envelope_of(await h.post("/a2/assign", "op1"), 403)  # already assigned
    assert body["errorCode"] == 0
    await envelope_of(await h.post("/a2/reject", "op1"), 403)


async def test_host_refusal_gives_403_910_and_task_pending_again(h):
    h.hooks.refuse.add("r1")
    async with h.sse("op1") as reader:
        await h.add("r1")
        await reader.next_event()
        body = await envelope_of(await h.post("/r1/assign", "op1"), 403)
        assert body["errorCode"] == 910
        assert "r1" in body["error"]
        ended = await reader.next_event()
        assert ended.data == {"taskId": "r1", "reason": "withdrawn"}
    assert h.engine.task("r1").state is TaskState.PENDING


async def test_assign_without_token_gives_401(h):
    await envelope_of(await h.client.post(BASE + "/x/assign"), 401)
    await envelope_of(await h.client.post(BASE + "/x/reject"), 401)


# ---------------------------------------------------------------- exit, queue-operators


async def test_exit(h):
    await envelope_of(await h.client.delete(BASE + "/exit", headers=h.auth("op1")), 200)
    await envelope_of(await h.client.delete(BASE + "/exit"), 401)


async def test_queue_operators_in_order(h, autojump_clock):
    async with h.sse("op1"):
        await trio.sleep(1)
        async with h.sse("op2"), h.sse("op2"):
            await h.settle()
            body = await envelope_of(
                await h.client.get(BASE + "/queue-operators", headers=h.auth("op3")), 200)
            rows = body["result"]
            assert [r["operatorId"] for r in rows] == ["op1", "op2"]
            assert [r["status"] for r in rows] == ["waiting", "waiting"]
            assert rows[1]["tabs"] == 2
            assert rows[0]["since"].endswith("Z")
            assert "T" in rows[0]["since"]
    await envelope_of(await h.client.get(BASE + "/queue-operators"), 401)


# ---------------------------------------------------------------- producer API


async def test_add_get_cancel_task(h):
    body = await envelope_of(await h.add("p1", priority=2, pool="default", minGrade=0,
                                         ttl=60, payload={"a": [1, 2]}), 201)
    assert body["result"] == {"taskId": "p1", "state": "pending"}
    body = await envelope_of(await h.client.get(BASE + "/tasks/p1", headers=h.producer), 200)
    assert body["result"]["state"] == "pending"
    assert body["result"]["priority"] == 2
    assert body["result"]["payload"] == {"a": [1, 2]}
    body = await envelope_of(await h.client.delete(BASE + "/tasks/p1", headers=h.producer),
                             200)
    assert body["result"] == {"taskId": "p1", "state": "cancelled"}
    body = await envelope_of(await h.client.get(BASE + "/tasks/p1", headers=h.producer), 200)
    assert body["result"]["state"] == "cancelled"


async def test_duplicate_id_gives_409(h):
    await envelope_of(await h.add("d1"), 201)
    await envelope_of(await h.add("d1"), 409)
    await envelope_of(await h.add("d1", operatorId="op1"), 409)
    assert h.engine.statistics()["total_added"] == 1


async def test_unknown_ids_give_404(h):
    await envelope_of(await h.client.get(BASE + "/tasks/zz", headers=h.producer), 404)
    await envelope_of(await h.client.delete(BASE + "/tasks/zz", headers=h.producer), 404)


async def test_cancel_assigned_gives_409(h):
    await h.add("c1", operatorId="op1")
    await envelope_of(await h.client.delete(BASE + "/tasks/c1", headers=h.producer), 409)


async def test_producer_routes_need_producer_role(h):
    op = h.auth("op1")
    await envelope_of(await h.client.post(BASE + "/tasks", json={"taskId": "x"}), 401)
    await envelope_of(await h.client.post(BASE + "/tasks", json={"taskId": "x"},
                                          headers=op), 403)
    await envelope_of(await h.client.get(BASE + "/tasks/x", headers=op), 403)
    await envelope_of(await h.client.delete(BASE + "/tasks/x", headers=op), 403)
    await envelope_of(await h.client.get(BASE + "/stats", headers=op), 403)
    await envelope_of(await h.client.get(BASE + "/stats"), 401)
    assert h.engine.statistics()["total_added"] == 0


async def test_stats(h):
    await h.add("s1")
    body = await envelope_of(await h.client.get(BASE + "/stats", headers=h.producer), 200)
    assert body["result"]["pending_tasks"] == 1


BAD_BODIES = [
    b"",
    b"not json",
    b"[1, 2]",
    b'"text"',
    b"{}",
    b'{"taskId": 5}',
    b'{"taskId": ""}',
    b'{"taskId": "   x"}',
    b'{"taskId": "a\\u0000b"}',
    b'{"taskId": "' + b"x" * 129 + b'"}',
    b'{"taskId": "ok", "priority": "high"}',
    b'{"taskId": "ok", "priority": true}',
    b'{"taskId": "ok", "priority": 1.5}',
    b'{"taskId": "ok", "minGrade": null}',
    b'{"taskId": "ok", "pool": ""}',
    b'{"taskId": "ok", "pool": 3}',
    b'{"taskId": "ok", "ttl": -1}',
    b'{"taskId": "ok", "ttl": 0}',
    b'{"taskId": "ok", "ttl": "soon"}',
    b'{"taskId": "ok", "ttl": NaN}',
    b'{"taskId": "ok", "ttl": Infinity}',
    b'{"taskId": "ok", "operatorId": ""}',
    b'{"taskId": "ok", "operatorId": 7}',
    b'{"taskId": "ok", "min_grade": 1}',
    b'{"taskId": "ok"',
    b"[" * 100_00 + b"]" * 100_00,
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
async def test_malformed_bodies_give_400_and_change_nothing(h, body):
    before = snapshot(h)
    resp = await h.client.post(BASE + "/tasks", data=body,
                               headers={**h.producer, "Content-Type": "application/json"})
    await envelope_of(resp, 400)
    assert snapshot(h) == before


async def test_oversized_body_gives_413(h):
    big = b'{"taskId": "big", "payload": "' + b"x" * 70_000 + b'"}'
    resp = await h.client.post(BASE + "/tasks", data=big,
                               headers={**h.producer, "Content-Type": "application/json"})
    await envelope_of(resp, 413)
    await envelope_of(await h.client.get(BASE + "/tasks/big", headers=h.producer), 404)


async def test_wrong_content_type_gives_415(h):
    resp = await h.client.post(BASE + "/tasks", data=b'{"taskId": "x"}',
                               headers={**h.producer, "Content-Type": "text/plain"})
    await envelope_of(resp, 415)


BAD_IDS = ["%00", "a%0Ab", "x" * 129, "%20x", "%7F"]


@pytest.mark.parametrize("task_id", BAD_IDS)
async def test_malformed_task_ids_give_400(h, task_id):
    for method, path in (("POST", f"/{task_id}/assign"), ("POST", f"/{task_id}/reject"),
                         ("GET", f"/tasks/{task_id}"), ("DELETE", f"/tasks/{task_id}")):
        resp = await h.client.open(BASE + path, method=method, headers=h.producer)
        await envelope_of(resp, 400)


WRONG_METHODS = [("GET", "/take-free"), ("POST", "/wait-sse"), ("GET", "/x/assign"),
                 ("PUT", "/x/reject"), ("POST", "/exit"), ("DELETE", "/queue-operators"),
                 ("PUT", "/tasks"), ("PATCH", "/tasks/x"), ("POST", "/stats")]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
async def test_wrong_methods_give_405_envelope(h, method, path):
    resp = await h.client.open(BASE + path, method=method, headers=h.producer)
    body = await envelope_of(resp, 405)
    assert method in body["error"]
    assert resp.headers["Allow"]


async def test_unknown_route_under_base_gives_404_envelope(h):
    await envelope_of(await h.client.get(BASE + "/no/such/route"), 404)
    await envelope_of(await h.client.get(BASE), 404)
    # Outside the base path, the host's own handling stays.
    resp = await h.client.get("/elsewhere")
    assert resp.status_code == 404
    assert "html" in resp.content_type


async def test_cors_preflight(h):
    resp = await h.client.options(BASE + "/take-free")
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
