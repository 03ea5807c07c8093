"""QueueTasks engine: hands tasks to waiting operators, one open offer per operator.

The public surface is re-exported here; the modules behind it are private.
"""

from ._core import Core, CoreConfig, Predicate
from ._effects import (
    Close,
    Confirm,
    Effect,
    EndedMessage,
    EngineEvent,
    EventKind,
    Message,
    Notify,
    OfferMessage,
    Send,
)
from ._errors import (
    AssignmentRefused,
    EngineNotRunning,
    HostHookFailed,
    InvalidInput,
    NotOfferedToYou,
    OperatorNotAllowed,
    Overloaded,
    QueueTasksError,
    TaskClosed,
    TaskExists,
    TaskNotFound,
)
from ._events import EventsLost, EventSubscription
from ._hooks import Hooks
from ._runtime import Engine, EngineConfig
from ._stream import TabStream
from ._types import (
    DEFAULT_POOL,
    CloseReason,
    EndReason,
    Operator,
    OperatorId,
    OperatorStatus,
    QueueEntry,
    TabId,
    TaskId,
    TaskInfo,
    TaskSpec,
    TaskState,
)

__all__ = [
    "DEFAULT_POOL",
    "AssignmentRefused",
    "Close",
    "CloseReason",
    "Confirm",
    "Core",
    "CoreConfig",
    "Effect",
    "EndReason",
    "EndedMessage",
    "Engine",
    "EngineConfig",
    "EngineEvent",
    "EngineNotRunning",
    "EventKind",
    "EventSubscription",
    "EventsLost",
    "Hooks",
    "HostHookFailed",
    "InvalidInput",
    "Message",
    "NotOfferedToYou",
    "Notify",
    "OfferMessage",
    "Operator",
    "OperatorId",
    "OperatorNotAllowed",
    "OperatorStatus",
    "Overloaded",
    "Predicate",
    "QueueEntry",
    "QueueTasksError",
    "Send",
    "TabId",
    "TabStream",
    "TaskClosed",
    "TaskExists",
    "TaskId",
    "TaskInfo",
    "TaskNotFound",
    "TaskSpec",
    "TaskState",
]
