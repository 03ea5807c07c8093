"""What the core asks its driver to do. Plain data: the core returns them, it never acts."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ._types import CloseReason, EndReason, OperatorId, TabId, TaskId


@dataclass(frozen=True, slots=True)
class OfferMessage:
    """A task for the operator: an offer to accept or reject (``assigned`` false, with a
    ``deadline`` on the driver's clock), or a pushed task already assigned (``assigned`` true)."""

    task_id: TaskId
    offer_id: int
    assigned: bool
    deadline: float | None
    payload: Any


@dataclass(frozen=True, slots=True)
class EndedMessage:
    """How the open offer ended."""

    task_id: TaskId
    offer_id: int
    reason: EndReason


Message = OfferMessage | EndedMessage


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``message`` to each of ``tabs``; when ``close`` is set, end each stream after it.

    The core has already forgotten closed tabs: their later ``close_tab`` is a no-op."""

    tabs: tuple[TabId, ...]
    message: Message
    close: CloseReason | None


@dataclass(frozen=True, slots=True)
class Close:
    """End these streams with no further message."""

    tabs: tuple[TabId, ...]
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class Confirm:
    """Ask the host to confirm that ``task_id`` goes to ``operator_id``; answer with
    ``Core.confirm`` exactly once. ``claim`` is true for a take-free pull."""

    operator_id: OperatorId
    task_id: TaskId
    claim: bool


class EventKind(enum.Enum):
    ADDED = "added"
    PUSHED = "pushed"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    REJECTED = "rejected"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """A transition the host can observe. ``age`` is the time since the task was added."""

    kind: EventKind
    task_id: TaskId
    operator_id: OperatorId | None
    at: float
    age: float
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Notify:
    event: EngineEvent


Effect = Send | Close | Confirm | Notify
