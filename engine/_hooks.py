"""The host application's side: what the seed called IExtensionService, in Python form."""

from __future__ import annotations

from collections.abc import Callable

from ._types import Operator, TaskId, TaskInfo


class Hooks:
    """Subclass and override what your application decides. Every method has a safe default.

    Async hooks run only at the edges (``can_wait`` when an operator arrives or pulls,
    ``confirm_assignment`` when he accepts), each under the engine's ``hook_timeout``; they never
    run inside the matching pass, so a slow or failing hook delays only its own caller.

    ``can_assign`` is the optional synchronous predicate (the seed's ``CanAssign``) applied on top
    of the indexed pool/grade eligibility. It must be a pure function of the task and operator
    attributes: it runs inside the matching pass, on candidates in queue order. Leave it ``None``
    (the default) when pools and grades say everything: matching then never calls Python code of
    yours.
    """

    can_assign: Callable[[TaskInfo, Operator], bool] | None = None

    async def can_wait(self, operator: Operator) -> bool:
        """May this operator wait for tasks or pull one (the seed's ``CanAddToQueue``)?
        False gives take-free 400 and wait-sse 204."""
        return True

    async def confirm_assignment(self, task: TaskInfo, operator: Operator) -> bool:
        """Record the assignment in your storage (the seed's ``TryAssignTask``). Return False or
        raise ``AssignmentRefused("why")`` to refuse: the operator gets 403 with errorCode 910 and
        the task is pending again, never offered to him again."""
        return True

    async def find_free_task(
        self, operator: Operator, exclude: frozenset[TaskId]
    ) -> TaskId | None:
        """Optional (the seed's ``GetFreeTaskIdForOperator``): a task that lives only in your
        database, for take-free when the engine has none for him. Never return an id in
        ``exclude`` (the ones already refused in this pull)."""
        return None
