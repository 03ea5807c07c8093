"""What the hot routes do, free of Quart: the Quart routes (``_routes``) and the lean ASGI path
(``_lean``) both call these, so the two cannot drift. Each raises a ``QueueTasksError`` that
the caller turns into the envelope through the one table of ``_errors``. ``req`` is a Quart
request, or on the lean path a ``ScopeRequest`` (only ever given to a ``lean`` ``Auth``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Request
from queuetasks.engine import TaskExists, TaskNotFound

from ._errors import BadRequest
from ._validate import check_id, get_field

if TYPE_CHECKING:
    from ._ext import QueueTasks

TASK_FIELDS = frozenset({"taskId", "priority", "pool", "minGrade", "operatorId", "ttl",
                         "payload"})


async def assign(ext: QueueTasks, req: Request, task_id: str) -> None:
    """The caller accepts the task offered to him; returns once the host confirmed."""
    check_id(task_id)
    operator = await ext.auth.operator(req)
    await ext.engine.assign(operator.id, task_id)


async def reject(ext: QueueTasks, req: Request, task_id: str) -> None:
    """The caller declines the task offered to him."""
    check_id(task_id)
    operator = await ext.auth.operator(req)
    ext.engine.reject(operator.id, task_id)


def create_task(ext: QueueTasks, body: dict[str, Any]) -> dict[str, Any]:
    """``POST tasks`` once the producer is known and the body parsed: add the task (offered at
    once or pending), or push it already assigned (``operatorId``). Nothing changes on error."""
    unknown = set(body) - TASK_FIELDS
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    task_id = get_field(body, "taskId", str, None)
    if task_id is None:
        raise BadRequest("taskId is required")
    check_id(task_id)
    priority = get_field(body, "priority", int, 0)
    pool = check_id(get_field(body, "pool", str, "default"), "pool")
    min_grade = get_field(body, "minGrade", int, 0)
    operator_id = get_field(body, "operatorId", str, None, nullable=True)
    ttl = get_field(body, "ttl", (int, float), None, nullable=True)
    payload = body.get("payload")
    if ttl is not None and not ttl > 0:
        raise BadRequest("ttl must be a positive number of seconds")
    engine = ext.engine
    if operator_id is not None:
        check_id(operator_id, "operatorId")
        # POST creates: an existing id is a duplicate here, even though the engine's
        # push_task may take over a pending task (hosts can do that in Python).
        try:
            engine.task(task_id)
        except TaskNotFound:
            pass
        else:
            raise TaskExists(f"task {task_id} already exists")
        engine.push_task(task_id, operator_id, payload=payload)
    else:
        engine.add_task(task_id, priority=priority, pool=pool, min_grade=min_grade,
                        ttl=None if ttl is None else float(ttl), payload=payload)
    return {"taskId": task_id, "state": engine.task(task_id).state.value}
