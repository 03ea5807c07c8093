"""Plain value types shared by the core, the runtime and the web layer.

Nothing here does I/O or reads a clock: every time is a float on the runtime's monotonic clock,
passed in by whoever drives the core.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NewType

from ._errors import InvalidInput

TaskId = NewType("TaskId", str)
OperatorId = NewType("OperatorId", str)
TabId = NewType("TabId", int)

DEFAULT_POOL = "default"


class TaskState(enum.Enum):
    """The one state a task is in (SPEC section 3)."""

    PENDING = "pending"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    CANCELLED = "cancelled"


class EndReason(enum.Enum):
    """How an offer ended; told to every open tab of the operator."""

    ASSIGNED = "assigned"
    REJECTED = "rejected"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    CANCELLED = "cancelled"


class CloseReason(enum.Enum):
    """Why the engine ended a tab's stream."""

    OFFER_ENDED = "offer-ended"
    PUSHED = "pushed"
    EXIT = "exit"
    SHUTDOWN = "shutdown"
    REPLACED = "replaced"


class OperatorStatus(enum.Enum):
    """What `queue-operators` reports for an operator the engine knows."""

    WAITING = "waiting"
    OFFERED = "offered"
    CONFIRMING = "confirming"
    RECEIVING_PUSH = "receiving-push"
    AWAY = "away"


@dataclass(frozen=True, slots=True)
class Operator:
    """An operator as the host describes him when he connects.

    ``grade`` and ``pools`` drive the indexed eligibility (a task of pool P with ``min_grade`` G
    suits an operator whose ``pools`` hold P and whose ``grade`` is at least G); ``attrs`` is free
    for the host's optional synchronous predicate.
    """

    id: OperatorId
    grade: int = 0
    pools: frozenset[str] = frozenset({DEFAULT_POOL})
    attrs: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidInput("operator id must be a non-empty string")
        if not self.pools:
            raise InvalidInput(f"operator {self.id} has no pools")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the host says about a new task (the eligibility data the core indexes)."""

    id: TaskId
    priority: int = 0
    pool: str = DEFAULT_POOL
    min_grade: int = 0
    ttl: float | None = None
    payload: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidInput("task id must be a non-empty string")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise InvalidInput(f"task {self.id}: priority must be an integer")
        if isinstance(self.min_grade, bool) or not isinstance(self.min_grade, int):
            raise InvalidInput(f"task {self.id}: min_grade must be an integer")
        if not isinstance(self.pool, str) or not self.pool:
            raise InvalidInput(f"task {self.id}: pool must be a non-empty string")
        if self.ttl is not None and not (self.ttl > 0 and self.ttl < float("inf")):
            raise InvalidInput(f"task {self.id}: ttl must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task, for the host and the producer API."""

    id: TaskId
    state: TaskState
    priority: int
    pool: str
    min_grade: int
    operator_id: OperatorId | None
    added_at: float
    payload: Any
    pushed: bool = False
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One operator of `queue-operators`, in queue order (longest waiting first)."""

    operator_id: OperatorId
    since: float
    status: OperatorStatus
    tabs: int
    task_id: TaskId | None
