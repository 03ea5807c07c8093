"""Runs exactly the embedding example of README.md (between the embed-example markers)."""

from __future__ import annotations

import re
import types
from pathlib import Path

from queuetasks.engine import TaskState

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = "/api/v1/QueueTasks"


def load_example() -> types.ModuleType:
    text = README.read_text(encoding="utf-8")
    region = text.split("<!-- embed-example:start -->", 1)[1]
    region = region.split("<!-- embed-example:end -->", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", region, flags=re.DOTALL)
    assert len(blocks) == 1, "the README's embed example must be one python block"
    module = types.ModuleType("readme_example")
    module.__file__ = str(README)
    exec(compile(blocks[0], str(README), "exec"), module.__dict__)
    return module


async def test_readme_example_runs():
    example = load_example()
    app, queue = example.app, example.queue
    async with app.test_app():
        client = app.test_client()
        ann = {"X-Staff": "ann"}
        assert (await client.post(BASE + "/take-free")).status_code == 401
        assert (await client.post(BASE + "/take-free", headers={"X-Staff": "eve"})).status_code \
            == 400
        resp = await client.post("/tickets/T1?vip=1")
        assert resp.status_code == 200
        # bob (grade 0) cannot get the VIP ticket; ann can pull it.
        bob = await client.post(BASE + "/take-free", headers={"X-Staff": "bob"})
        assert (await bob.get_json())["result"] == {"taskId": None}
        resp = await client.post(BASE + "/take-free", headers=ann)
        assert (await resp.get_json())["result"] == {"taskId": "T1"}
        assert queue.engine.task("T1").state is TaskState.ASSIGNED
        assert ("T1", "ann") in example.MyRules.assigned
        # The producer API is guarded by the host's check.
        resp = await client.post(BASE + "/tasks", json={"taskId": "T2"})
        assert resp.status_code == 401
        resp = await client.post(BASE + "/tasks", json={"taskId": "T2"},
                                 headers={"X-Service-Key": "backend-key"})
        assert resp.status_code == 201
